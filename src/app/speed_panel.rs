//! The Client tab's speed test: a "Test speed" button beside Upload, and its result as a
//! small bar chart with the limit in words ("limited by the receiver's disk").

use egui::{RichText, Ui};

use super::i18n::{T, Tr};
use super::palette;
use crate::events::{Bottleneck, ProbeReport};

/// Where the last speed test is.
#[derive(Debug, Default, Clone, PartialEq)]
pub enum SpeedTest {
    #[default]
    None,
    Running {
        to: String,
    },
    Done {
        to: String,
        report: ProbeReport,
    },
    Failed {
        to: String,
        reason: String,
    },
}

impl SpeedTest {
    pub fn running(&self) -> bool {
        matches!(self, SpeedTest::Running { .. })
    }
}

fn limit_words(tr: Tr, limit: Bottleneck) -> &'static str {
    tr.get(match limit {
        Bottleneck::Network => T::LimitNetwork,
        Bottleneck::ReceiverDisk => T::LimitReceiverDisk,
        Bottleneck::SenderCpu => T::LimitSenderCpu,
        Bottleneck::ReceiverCpu => T::LimitReceiverCpu,
    })
}

/// Shows the last speed test, if any.
pub fn speed_ui(ui: &mut Ui, tr: Tr, test: &SpeedTest) {
    match test {
        SpeedTest::None => {}
        SpeedTest::Running { to } => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(tr.fill(T::SpeedRunning, &[to]));
            });
        }
        SpeedTest::Failed { to, reason } => {
            ui.label(RichText::new(tr.fill(T::SpeedFailed, &[to, reason])).color(palette::ERROR));
        }
        SpeedTest::Done { to, report } => {
            ui.label(RichText::new(tr.fill(T::SpeedResult, &[to])).strong());
            let rows = [
                (T::SpeedNetwork, report.network),
                (T::SpeedReceiverDisk, report.receiver_disk),
                (T::SpeedReceiverHash, report.receiver_hash),
                (T::SpeedSenderHash, report.sender_hash),
            ];
            let top = rows.iter().map(|(_, v)| *v).max().unwrap_or(1).max(1) as f32;
            egui::Grid::new("speed_bars").num_columns(2).show(ui, |ui| {
                for (label, speed) in rows {
                    ui.label(tr.get(label));
                    if speed == 0 {
                        ui.label(RichText::new(tr.get(T::SpeedNotMeasured)).weak());
                    } else {
                        let text = format!("{} MB/s", speed / 1_000_000);
                        let bar = egui::ProgressBar::new(speed as f32 / top)
                            .desired_width(220.0)
                            .text(text);
                        palette::progress_bar(ui, bar);
                    }
                    ui.end_row();
                }
            });
            let (limit, speed) = report.bottleneck();
            let mbps = speed / 1_000_000;
            ui.label(tr.fill(T::SpeedLimit, &[&limit_words(tr, limit), &mbps]));
        }
    }
}
