//! `logging` (always granted): lines in the host log, tagged with the plugin's name.

/// Severity of a log line, as the host numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Level {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

/// Writes `message` at `level`. Logging never fails a plugin, so the host's code is ignored.
pub fn log(level: Level, message: &str) {
    // SAFETY: pointer and length describe a live &str.
    let _ = unsafe { crate::sys::log(level as u32, message.as_ptr(), message.len() as u32) };
}

/// Trace level.
pub fn trace(message: &str) {
    log(Level::Trace, message)
}

/// Debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message)
}

/// Info level.
pub fn info(message: &str) {
    log(Level::Info, message)
}

/// Warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message)
}

/// Error level.
pub fn error(message: &str) {
    log(Level::Error, message)
}
