//! The window's own file and folder picker, for systems with no file dialog (no XDG desktop
//! portal on D-Bus and no `zenity`): without it "Choose files…" would do nothing. A path field
//! with completion (Tab completes the common prefix; the matches are listed to click) and a
//! simple folder browser (click a folder to enter it, click files to select them, Up).
//!
//! The UI thread never touches the disk here: listing a folder, and looking at a typed path,
//! run on background threads ([`super::file_lister`]), whose answers are taken at the start of
//! each frame. While the folder asked for is being read the previous listing stays shown with
//! a "Reading…" note, and everything stays usable; only the newest request's answer applies.
//! A folder is listed only when the folder shown or the typed path's folder changes: never
//! every frame, nor at every key typed. Tab on a path whose folder is not listed yet asks for
//! the listing and completes when it arrives (as a user pressing Tab once expects), unless
//! the field was typed on meanwhile.

use std::path::{Path, PathBuf};

use egui::{Key, RichText, Ui};

use super::file_lister::{Answer, Entry, Kind, Lister, Listing, MAX_ENTRIES, Request};
use super::i18n::{T, Tr};
use super::model::format_bytes;
use super::palette;
use crate::protocol::escape_line;

/// Completions listed under the path field.
const MAX_MATCHES: usize = 12;

/// What the picker was opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowseFor {
    Files,
    /// The download folder (Server tab).
    Folder,
    /// A folder to send (Client tab).
    SendFolder,
}

/// What the user chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chosen {
    Files(Vec<PathBuf>),
    Folder(PathBuf),
    SendFolder(PathBuf),
}

/// Why the folder or the typed path could not be used (put in words when drawn).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    /// The folder, made safe to draw, and why it could not be read.
    Unreadable(String),
    /// The typed path, made safe to draw.
    NoSuchPath(String),
    Busy,
}

/// The in-app picker's state; closed until [`FileBrowser::open`].
#[derive(Debug)]
pub struct FileBrowser {
    pub target: Option<BrowseFor>,
    /// The folder shown (changes when its listing arrives).
    pub dir: PathBuf,
    /// The path field as typed.
    pub path_field: String,
    pub selected: Vec<PathBuf>,
    listing: Listing,
    error: Option<Problem>,
    /// Completions of `path_field`, computed when it changes.
    matches: Vec<Entry>,
    /// The field the matches were computed for (left behind while its folder is being listed,
    /// so they are computed when the listing arrives).
    matches_for: String,
    /// The folder the completions were last taken from, and its entries (listed again only
    /// when the typed folder changes, or the picker is opened or moves).
    matches_listing: Option<(PathBuf, Vec<Entry>)>,
    /// The folder whose completion listing was asked for and has not arrived.
    matches_asked: Option<PathBuf>,
    /// The field as it was when Tab was pressed before its folder was listed: completed when
    /// the listing arrives, unless typed on since.
    tab_waiting: Option<String>,
    /// The field as it was when the folder shown was last asked for: its answer writes the new
    /// folder there only if the user has not typed since.
    field_at_request: String,
    /// The field was completed: its cursor goes to the end.
    cursor_to_end: bool,
    lister: Lister,
}

impl Default for FileBrowser {
    fn default() -> Self {
        Self {
            target: None,
            dir: dirs::home_dir().unwrap_or_else(|| PathBuf::from("/")),
            path_field: String::new(),
            selected: Vec::new(),
            listing: Listing::default(),
            error: None,
            matches: Vec::new(),
            matches_for: String::new(),
            matches_listing: None,
            matches_asked: None,
            tab_waiting: None,
            field_at_request: String::new(),
            cursor_to_end: false,
            lister: Lister::default(),
        }
    }
}

/// `text` as a folder and the start of a name in it: `/a/b/ho` is (`/a/b`, `ho`).
fn split_typed(text: &str) -> (PathBuf, String) {
    match text.rfind('/') {
        Some(i) => (
            PathBuf::from(if i == 0 { "/" } else { &text[..i] }),
            text[i + 1..].to_owned(),
        ),
        None => (PathBuf::from("."), text.to_owned()),
    }
}

fn common_prefix<'a>(mut names: impl Iterator<Item = &'a str>) -> String {
    let Some(first) = names.next() else {
        return String::new();
    };
    let mut len = first.len();
    for name in names {
        len = first
            .char_indices()
            .zip(name.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((i, a), _)| i + a.len_utf8())
            .min(len);
    }
    first[..len].to_owned()
}

impl FileBrowser {
    pub fn is_open(&self) -> bool {
        self.target.is_some()
    }

    /// Whether a folder asked for (shown or for completion) has not been read yet.
    pub fn is_reading(&self) -> bool {
        self.lister.is_pending(Kind::Shown) || self.lister.is_pending(Kind::Completion)
    }

    /// Opens the picker in `start` (or the last folder it showed, if `start` is `None` or not a
    /// folder); `ctx` is woken when a listing arrives.
    pub fn open(&mut self, ctx: &egui::Context, target: BrowseFor, start: Option<PathBuf>) {
        self.lister.set_ctx(ctx);
        self.target = Some(target);
        self.selected.clear();
        let fallback = self.dir.clone();
        self.ask(match start {
            Some(start) => Request::Open { start, fallback },
            None => Request::Enter(fallback),
        });
    }

    pub fn close(&mut self) {
        self.target = None;
        self.selected.clear();
        self.tab_waiting = None;
        self.lister.cancel(Kind::Shown);
        self.lister.cancel(Kind::Completion);
        self.matches_asked = None;
    }

    /// Asks for a new folder to show; returns at once.
    fn ask(&mut self, request: Request) {
        self.field_at_request = self.path_field.clone();
        self.lister.request(request);
    }

    fn enter(&mut self, dir: PathBuf) {
        self.ask(Request::Enter(dir));
    }

    fn up(&mut self) {
        if let Some(parent) = self.dir.parent() {
            self.enter(parent.to_path_buf());
        }
    }

    fn toggle(&mut self, path: &Path) {
        if let Some(i) = self.selected.iter().position(|p| p == path) {
            self.selected.remove(i);
        } else {
            self.selected.push(path.to_path_buf());
        }
    }

    /// The typed path: a folder is entered, a file is selected (in its folder).
    fn go(&mut self) {
        let path = PathBuf::from(self.path_field.trim_end_matches('\n'));
        let shown = self.dir.clone();
        self.ask(Request::Go { path, shown });
    }

    /// Takes the answers arrived, then brings the completions and a waiting Tab up to date.
    fn poll(&mut self) {
        let answers = self.lister.take();
        self.apply(answers);
    }

    fn apply(&mut self, answers: Vec<super::file_lister::Done>) {
        for done in answers {
            match (done.kind, done.answer) {
                (
                    Kind::Shown,
                    Answer::Listed {
                        dir,
                        listing,
                        select,
                    },
                ) => self.show_listing(dir, listing, select),
                (Kind::Shown, Answer::Select(path)) => self.select(path),
                (Kind::Shown, Answer::Unreadable { dir, error }) => {
                    let dir = escape_line(&dir.to_string_lossy()).into_owned();
                    self.error = Some(Problem::Unreadable(format!("{dir}: {error}")));
                }
                (Kind::Shown, Answer::NoSuchPath(path)) => {
                    let typed = escape_line(&path.to_string_lossy()).into_owned();
                    self.error = Some(Problem::NoSuchPath(typed));
                }
                (Kind::Shown, Answer::Busy) => self.error = Some(Problem::Busy),
                (Kind::Completion, answer) => {
                    let entries = match answer {
                        Answer::Listed { listing, .. } => listing.entries,
                        // Nothing to complete from (as for an unreadable folder).
                        _ => Vec::new(),
                    };
                    if let Some(dir) = self.matches_asked.take() {
                        self.matches_listing = Some((dir, entries));
                        self.matches_for.clear();
                    }
                }
            }
        }
        self.refresh_matches();
        if let Some(waiting) = &self.tab_waiting {
            if *waiting != self.path_field {
                self.tab_waiting = None;
            } else if self.matches_for == self.path_field {
                self.tab_waiting = None;
                self.complete();
            }
        }
    }

    fn show_listing(&mut self, dir: PathBuf, listing: Listing, select: Option<PathBuf>) {
        // A fresh listing serves completion in that folder too; older ones may be stale.
        self.lister.cancel(Kind::Completion);
        self.matches_asked = None;
        self.matches_listing = Some((dir.clone(), listing.entries.clone()));
        self.matches_for.clear();
        self.listing = listing;
        self.error = None;
        self.dir = dir;
        match select {
            Some(path) => self.select(path),
            None => self.field_to_dir(),
        }
    }

    fn select(&mut self, path: PathBuf) {
        if !self.selected.contains(&path) {
            self.selected.push(path);
        }
        self.field_to_dir();
    }

    /// The field shows the folder shown, unless the user typed since asking for it.
    fn field_to_dir(&mut self) {
        if self.path_field == self.field_at_request {
            self.path_field = with_slash(&self.dir);
        }
    }

    /// Recomputes the completions when the field changed since the last time; asks for the
    /// typed folder's listing when it is not there.
    fn refresh_matches(&mut self) {
        if self.matches_for == self.path_field {
            return;
        }
        let (dir, prefix) = split_typed(&self.path_field);
        if prefix.is_empty() {
            self.matches = Vec::new();
            self.matches_for = self.path_field.clone();
            return;
        }
        // Typing a name lists its folder once, not at every key.
        let listed = match &self.matches_listing {
            Some((listed_dir, entries)) if *listed_dir == dir => entries,
            _ => {
                self.matches.clear();
                if self.matches_asked.as_ref() != Some(&dir) {
                    self.lister.request(Request::Complete(dir.clone()));
                    self.matches_asked = Some(dir);
                }
                return;
            }
        };
        self.matches = listed
            .iter()
            .filter(|e| {
                e.path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            })
            .take(MAX_MATCHES)
            .cloned()
            .collect();
        self.matches_for = self.path_field.clone();
    }

    /// Tab: completes the field to the matches' common prefix (a single folder gets its `/`);
    /// if the typed folder is not listed yet, once its listing arrives.
    fn complete(&mut self) {
        self.refresh_matches();
        if self.matches_for != self.path_field {
            self.tab_waiting = Some(self.path_field.clone());
            return;
        }
        let (dir, _) = split_typed(&self.path_field);
        let names: Vec<String> = self
            .matches
            .iter()
            .filter_map(|e| Some(e.path.file_name()?.to_string_lossy().into_owned()))
            .collect();
        let prefix = common_prefix(names.iter().map(String::as_str));
        if prefix.is_empty() {
            return;
        }
        let mut completed = dir.join(&prefix).to_string_lossy().into_owned();
        if let [only] = &self.matches[..]
            && only.is_dir
        {
            completed.push('/');
        }
        if completed != self.path_field {
            self.path_field = completed;
            self.cursor_to_end = true;
        }
    }

    /// Shows the picker (if open) and returns the choice once the user confirms it.
    #[must_use]
    pub fn show(&mut self, ctx: &egui::Context, tr: Tr) -> Option<Chosen> {
        let target = self.target?;
        self.poll();
        let title = match target {
            BrowseFor::Files => tr.get(T::BrowserTitleFiles),
            BrowseFor::Folder => tr.get(T::BrowserTitleFolder),
            BrowseFor::SendFolder => tr.get(T::BrowserTitleSendFolder),
        };
        let mut chosen = None;
        let mut keep_open = true;
        egui::Window::new(title)
            .id(egui::Id::unique("in_app_picker"))
            .collapsible(false)
            .default_size([560.0, 420.0])
            .anchor(egui::Align2::CENTER_TOP, [0.0, 60.0])
            .show(ctx, |ui| {
                chosen = self.body_ui(ui, tr, target, &mut keep_open);
            });
        if chosen.is_some() || !keep_open {
            self.close();
        }
        chosen
    }

    fn body_ui(
        &mut self,
        ui: &mut Ui,
        tr: Tr,
        target: BrowseFor,
        keep_open: &mut bool,
    ) -> Option<Chosen> {
        ui.label(RichText::new(tr.get(T::NoSystemDialog)).color(palette::WARN));
        ui.separator();
        ui.horizontal(|ui| {
            if ui.button(tr.get(T::BrowserUp)).clicked() {
                self.up();
            }
            let label = ui.label(tr.get(T::BrowserPath));
            let field = ui
                .add(
                    egui::TextEdit::singleline(&mut self.path_field)
                        .desired_width(360.0)
                        // Keeps Tab in the field, for completion.
                        .lock_focus(true),
                )
                .labelled_by(label.id);
            let (tab, enter) = ui.input(|i| (i.key_pressed(Key::Tab), i.key_pressed(Key::Enter)));
            if field.has_focus() && tab {
                self.complete();
            }
            // The cursor goes to the end of the completed text (now, or when the listing a
            // Tab waited for arrived).
            if std::mem::take(&mut self.cursor_to_end)
                && let Some(mut state) = egui::TextEdit::load_state(ui.ctx(), field.id)
            {
                let end = egui::text::CCursor::new(self.path_field.chars().count());
                state
                    .cursor
                    .set_char_range(Some(egui::text::CCursorRange::one(end)));
                state.store(ui.ctx(), field.id);
            }
            if ui.button(tr.get(T::BrowserGo)).clicked() || (field.lost_focus() && enter) {
                self.go();
            }
        });
        self.refresh_matches();
        if !self.matches.is_empty() {
            let mut picked = None;
            ui.horizontal_wrapped(|ui| {
                ui.label(RichText::new(tr.get(T::BrowserMatches)).weak());
                for m in &self.matches {
                    let shown = if m.is_dir {
                        format!("{}/", m.shown)
                    } else {
                        m.shown.clone()
                    };
                    if ui.small_button(shown).clicked() {
                        picked = Some(m.path.clone());
                    }
                }
            });
            if let Some(path) = picked {
                self.path_field = path.to_string_lossy().into_owned();
                self.go();
            }
        }
        if let Some(error) = &self.error {
            let text = match error {
                Problem::Unreadable(text) => text.clone(),
                Problem::NoSuchPath(typed) => tr.fill(T::BrowserNoSuchPath, &[typed]),
                Problem::Busy => tr.get(T::BrowserBusy).to_owned(),
            };
            ui.label(RichText::new(text).color(palette::ERROR));
        }
        if self.is_reading() {
            ui.label(RichText::new(tr.get(T::BrowserReading)).weak());
        }
        ui.separator();
        let mut clicked = None;
        egui::ScrollArea::vertical()
            .max_height(260.0)
            .auto_shrink([false, true])
            .show(ui, |ui| {
                if self.listing.entries.is_empty() {
                    ui.label(RichText::new(tr.get(T::BrowserEmpty)).weak());
                }
                for entry in &self.listing.entries {
                    if entry.is_dir {
                        if ui.button(format!("{}/", entry.shown)).clicked() {
                            clicked = Some(entry.clone());
                        }
                    } else {
                        ui.horizontal(|ui| {
                            if target == BrowseFor::Files {
                                let on = self.selected.contains(&entry.path);
                                if ui.selectable_label(on, &entry.shown).clicked() {
                                    clicked = Some(entry.clone());
                                }
                            } else {
                                ui.label(RichText::new(&entry.shown).weak());
                            }
                            if let Some(size) = entry.size {
                                ui.label(RichText::new(format_bytes(size as f64)).weak());
                            }
                        });
                    }
                }
                if self.listing.truncated {
                    ui.label(RichText::new(tr.fill(T::BrowserTruncated, &[&MAX_ENTRIES])).weak());
                }
            });
        match clicked {
            Some(entry) if entry.is_dir => self.enter(entry.path),
            Some(entry) => self.toggle(&entry.path),
            None => {}
        }
        ui.separator();
        let mut chosen = None;
        ui.horizontal(|ui| {
            match target {
                BrowseFor::Files => {
                    ui.label(tr.fill(T::BrowserSelected, &[&self.selected.len()]));
                    if ui
                        .add_enabled(
                            !self.selected.is_empty(),
                            egui::Button::new(RichText::new(tr.get(T::BrowserAdd)).strong()),
                        )
                        .clicked()
                    {
                        chosen = Some(Chosen::Files(self.selected.clone()));
                    }
                }
                BrowseFor::Folder | BrowseFor::SendFolder => {
                    // Not while the folder asked for is being read: the folder shown is about
                    // to be replaced, and choosing it would surprise.
                    if ui
                        .add_enabled(
                            !self.lister.is_pending(Kind::Shown),
                            egui::Button::new(RichText::new(tr.get(T::BrowserUseFolder)).strong()),
                        )
                        .clicked()
                    {
                        let dir = self.dir.clone();
                        chosen = Some(match target {
                            BrowseFor::SendFolder => Chosen::SendFolder(dir),
                            _ => Chosen::Folder(dir),
                        });
                    }
                }
            }
            if ui.button(tr.get(T::BrowserClose)).clicked() {
                *keep_open = false;
            }
        });
        chosen
    }
}

fn with_slash(dir: &Path) -> String {
    let mut text = dir.to_string_lossy().into_owned();
    if !text.ends_with('/') {
        text.push('/');
    }
    text
}

#[cfg(test)]
#[path = "file_browser_tests.rs"]
mod tests;
