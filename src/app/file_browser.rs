//! The window's own file and folder picker, for systems with no file dialog (no XDG desktop
//! portal on D-Bus and no `zenity`): without it "Choose files…" would do nothing. A path field
//! with completion (Tab completes the common prefix; the matches are listed to click) and a
//! simple folder browser (click a folder to enter it, click files to select them, Up).
//!
//! Listing a folder is a local `read_dir` (no `stat` per entry but for symlinks), bounded to
//! [`MAX_ENTRIES`], done on the UI thread only when the folder shown or the typed path's
//! folder changes: never every frame, nor at every key typed.

use std::path::{Path, PathBuf};

use egui::{Key, RichText, Ui};

use super::i18n::{T, Tr};
use super::palette;
use crate::protocol::escape_line;

/// Entries listed per folder; a larger folder is cut (and says so).
const MAX_ENTRIES: usize = 5_000;
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

#[derive(Debug, Clone)]
struct Entry {
    /// The name made safe to draw (a local name can hold control characters too).
    shown: String,
    path: PathBuf,
    is_dir: bool,
}

/// The in-app picker's state; closed until [`FileBrowser::open`].
#[derive(Debug)]
pub struct FileBrowser {
    pub target: Option<BrowseFor>,
    pub dir: PathBuf,
    /// The path field as typed.
    pub path_field: String,
    pub selected: Vec<PathBuf>,
    entries: Vec<Entry>,
    truncated: bool,
    /// Why the folder or the typed path could not be used.
    error: Option<String>,
    /// Completions of `path_field`, computed when it changes.
    matches: Vec<Entry>,
    matches_for: String,
    /// The folder the completions were last taken from, and its entries (listed again only
    /// when the typed folder changes, or the picker is opened or moves).
    matches_listing: Option<(PathBuf, Vec<Entry>)>,
}

impl Default for FileBrowser {
    fn default() -> Self {
        Self {
            target: None,
            dir: dirs::home_dir().unwrap_or_else(|| PathBuf::from("/")),
            path_field: String::new(),
            selected: Vec::new(),
            entries: Vec::new(),
            truncated: false,
            error: None,
            matches: Vec::new(),
            matches_for: String::new(),
            matches_listing: None,
        }
    }
}

/// The entries of `dir`, folders first, then by name; `true` when cut at [`MAX_ENTRIES`].
fn list(dir: &Path) -> std::io::Result<(Vec<Entry>, bool)> {
    let mut entries = Vec::new();
    let mut truncated = false;
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        if entries.len() == MAX_ENTRIES {
            truncated = true;
            break;
        }
        let path = entry.path();
        // The listing's own type, without a `stat` each; only a symlink is followed (so a
        // link to a folder can be entered).
        let is_dir = match entry.file_type() {
            Ok(t) if t.is_symlink() => path.is_dir(),
            Ok(t) => t.is_dir(),
            Err(_) => path.is_dir(),
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        entries.push(Entry {
            shown: escape_line(&name).into_owned(),
            path,
            is_dir,
        });
    }
    entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.shown.cmp(&b.shown)));
    Ok((entries, truncated))
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

    /// Opens the picker in `start` (or the last folder it showed, if `start` is `None`).
    pub fn open(&mut self, target: BrowseFor, start: Option<PathBuf>) {
        self.target = Some(target);
        self.selected.clear();
        let dir = start
            .filter(|d| d.is_dir())
            .unwrap_or_else(|| self.dir.clone());
        self.enter(dir);
    }

    pub fn close(&mut self) {
        self.target = None;
        self.selected.clear();
    }

    fn enter(&mut self, dir: PathBuf) {
        // Whatever was listed before may have changed since.
        self.matches_listing = None;
        self.matches_for.clear();
        match list(&dir) {
            Ok((entries, truncated)) => {
                self.entries = entries;
                self.truncated = truncated;
                self.error = None;
                self.path_field = with_slash(&dir);
                self.dir = dir;
            }
            Err(e) => self.error = Some(format!("{}: {e}", escape_line(&dir.to_string_lossy()))),
        }
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
    fn go(&mut self, tr: Tr) {
        let path = PathBuf::from(self.path_field.trim_end_matches('\n'));
        if path.is_dir() {
            self.enter(path);
        } else if path.is_file() {
            if let Some(parent) = path.parent().filter(|p| *p != self.dir) {
                self.enter(parent.to_path_buf());
            }
            if !self.selected.contains(&path) {
                self.selected.push(path);
            }
            self.path_field = with_slash(&self.dir);
        } else {
            self.error = Some(tr.fill(T::BrowserNoSuchPath, &[&escape_line(&self.path_field)]));
        }
    }

    /// Recomputes the completions when the field changed since the last time.
    fn refresh_matches(&mut self) {
        if self.matches_for == self.path_field {
            return;
        }
        self.matches_for = self.path_field.clone();
        let (dir, prefix) = split_typed(&self.path_field);
        if prefix.is_empty() {
            self.matches = Vec::new();
            return;
        }
        // Typing a name lists its folder once, not at every key.
        let listed = match &self.matches_listing {
            Some((listed_dir, entries)) if *listed_dir == dir => entries,
            _ => {
                let entries = list(&dir).map(|(e, _)| e).unwrap_or_default();
                &self.matches_listing.insert((dir, entries)).1
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
    }

    /// Tab: completes the field to the matches' common prefix (a single folder gets its `/`).
    fn complete(&mut self) {
        self.refresh_matches();
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
        self.path_field = completed;
    }

    /// Shows the picker (if open) and returns the choice once the user confirms it.
    #[must_use]
    pub fn show(&mut self, ctx: &egui::Context, tr: Tr) -> Option<Chosen> {
        let target = self.target?;
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
                // The cursor goes to the end of the completed text.
                if let Some(mut state) = egui::TextEdit::load_state(ui.ctx(), field.id) {
                    let end = egui::text::CCursor::new(self.path_field.chars().count());
                    state
                        .cursor
                        .set_char_range(Some(egui::text::CCursorRange::one(end)));
                    state.store(ui.ctx(), field.id);
                }
            }
            if ui.button(tr.get(T::BrowserGo)).clicked() || (field.lost_focus() && enter) {
                self.go(tr);
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
                self.go(tr);
            }
        }
        if let Some(error) = &self.error {
            ui.label(RichText::new(error).color(palette::ERROR));
        }
        ui.separator();
        let mut clicked = None;
        egui::ScrollArea::vertical()
            .max_height(260.0)
            .auto_shrink([false, true])
            .show(ui, |ui| {
                if self.entries.is_empty() {
                    ui.label(RichText::new(tr.get(T::BrowserEmpty)).weak());
                }
                for entry in &self.entries {
                    if entry.is_dir {
                        if ui.button(format!("{}/", entry.shown)).clicked() {
                            clicked = Some(entry.clone());
                        }
                    } else if target == BrowseFor::Files {
                        let on = self.selected.contains(&entry.path);
                        if ui.selectable_label(on, &entry.shown).clicked() {
                            clicked = Some(entry.clone());
                        }
                    } else {
                        ui.label(RichText::new(&entry.shown).weak());
                    }
                }
                if self.truncated {
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
                    if ui
                        .button(RichText::new(tr.get(T::BrowserUseFolder)).strong())
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
mod tests {
    use super::*;

    #[test]
    fn typed_paths_split_and_complete_to_the_common_prefix() {
        assert_eq!(split_typed("/a/b/ho"), (PathBuf::from("/a/b"), "ho".into()));
        assert_eq!(split_typed("/ho"), (PathBuf::from("/"), "ho".into()));
        assert_eq!(split_typed("/a/"), (PathBuf::from("/a"), String::new()));
        assert_eq!(common_prefix(["holiday", "home", "hot"].into_iter()), "ho");
        assert_eq!(common_prefix(["日記1", "日記2"].into_iter()), "日記");
        assert_eq!(common_prefix(std::iter::empty()), "");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("holiday.jpg"), "x").unwrap();
        std::fs::write(dir.path().join("home.txt"), "x").unwrap();
        std::fs::create_dir(dir.path().join("photos")).unwrap();
        let mut browser = FileBrowser::default();
        browser.open(BrowseFor::Files, Some(dir.path().to_path_buf()));
        assert_eq!(browser.entries[0].shown, "photos", "folders first");
        browser.path_field = format!("{}/h", dir.path().display());
        browser.complete();
        assert_eq!(browser.path_field, format!("{}/ho", dir.path().display()));
        browser.path_field = format!("{}/p", dir.path().display());
        browser.complete();
        assert_eq!(
            browser.path_field,
            format!("{}/photos/", dir.path().display())
        );
    }

    #[test]
    fn typing_a_name_lists_its_folder_once_and_moving_lists_it_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("holiday.jpg"), "x").unwrap();
        let mut browser = FileBrowser::default();
        browser.open(BrowseFor::Files, Some(dir.path().to_path_buf()));
        let names = |b: &FileBrowser| -> Vec<String> {
            b.matches.iter().map(|e| e.shown.clone()).collect()
        };
        browser.path_field = format!("{}/h", dir.path().display());
        browser.refresh_matches();
        assert_eq!(names(&browser), ["holiday.jpg"]);
        // A file made while typing is not seen: the folder is not read again at each key.
        std::fs::write(dir.path().join("home.txt"), "x").unwrap();
        browser.path_field = format!("{}/ho", dir.path().display());
        browser.refresh_matches();
        assert_eq!(names(&browser), ["holiday.jpg"]);
        // Entering a folder (here the same one again) reads it afresh.
        browser.enter(dir.path().to_path_buf());
        browser.path_field = format!("{}/ho", dir.path().display());
        browser.refresh_matches();
        assert_eq!(names(&browser), ["holiday.jpg", "home.txt"]);
        // A symlink to a folder is listed as a folder (it can be entered).
        std::os::unix::fs::symlink(dir.path(), dir.path().join("link")).unwrap();
        browser.enter(dir.path().to_path_buf());
        assert!(
            browser
                .entries
                .iter()
                .any(|e| e.shown == "link" && e.is_dir)
        );
    }
}
