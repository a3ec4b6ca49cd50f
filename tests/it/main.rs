//! Integration tests, compiled as one binary (as ripgrep does) so helpers are shared and the
//! crate is linked once. Everything runs on real sockets on 127.0.0.1 and real temp folders.

mod attacks_fs;
mod attacks_slots;
mod attacks_text;
mod cli;
mod cli_notes;
mod desktop;
mod faults;
mod ferry;
mod folders;
mod folders_hardening;
mod folders_resume;
mod gui;
mod gui_desktop;
mod gui_devices;
mod gui_folders;
mod gui_localsend;
mod gui_localsend_pin;
mod gui_secure;
mod hostile;
mod layers;
mod localsend;
mod localsend_folders;
mod localsend_send;
mod localsend_sweep;
mod netns;
mod notes;
mod notes_secure;
mod paths;
mod plain;
mod python;
mod secure;
mod secure_transfer;
mod speed;
mod util;
