//! TensorBoard event files (`events.out.tfevents.<time>.<host>`), as PyTorch's
//! `SummaryWriter` writes them: `tensorboard --logdir runs` shows every run directory.
//!
//! A file is a sequence of TFRecords ([`record`]) of `Event` protocol buffers ([`proto`]):
//! first the file version, then scalars and PNG-encoded images, each at a global step (the
//! number of training batches done). Event files are appended to as training goes (readers
//! follow them live), so unlike the run's other files they are not written atomically; a
//! resumed run starts a new file whose first event marks a session start at the step it
//! continues from, and readers then drop whatever an earlier file logged beyond its last
//! checkpoint.

pub mod proto;
pub mod record;
mod run_log;

pub use run_log::{BATCH_NEG_ELBO, BATCH_OBJECTIVE, EPOCH_TAGS, RECONSTRUCTIONS, RunLog, SAMPLES};

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use prost::Message;

use crate::image::{Picture, encode_png};
use proto::{Content, Event, Image, SessionLog, Summary, Value, What};

/// The prefix of every event file's name (what TensorBoard looks for).
pub use crate::run::{EVENTS_PREFIX as PREFIX, is_event_file};

/// Appends events to one event file of a run directory.
pub struct EventWriter {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
}

impl EventWriter {
    /// Creates a new event file in `dir` (named after the current time and the host; a later
    /// second if a file of that name exists) and writes its version record; with
    /// `resumed_at`, also a session start at that step.
    ///
    /// # Errors
    /// When the file cannot be created or written.
    pub fn create(dir: &Path, resumed_at: Option<i64>) -> Result<Self> {
        let now = wall_time();
        let host = hostname();
        let mut secs = now as u64;
        let (file, path) = loop {
            let path = dir.join(format!("{PREFIX}{secs}.{host}"));
            match File::options().write(true).create_new(true).open(&path) {
                Ok(f) => break (f, path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => secs += 1,
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        };
        let mut w = EventWriter {
            file,
            path,
            buf: Vec::new(),
        };
        w.write(0, What::FileVersion("brain.Event:2".into()))?;
        if let Some(step) = resumed_at {
            w.write(
                step,
                What::SessionLog(SessionLog {
                    status: proto::SESSION_START,
                    ..SessionLog::default()
                }),
            )?;
        }
        Ok(w)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logs scalars at `step`, as one event.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn scalars(&mut self, step: i64, values: &[(&str, f64)]) -> Result<()> {
        let value = values
            .iter()
            .map(|&(tag, v)| Value {
                tag: tag.to_string(),
                value: Some(Content::SimpleValue(v as f32)),
            })
            .collect();
        self.write(step, What::Summary(Summary { value }))
    }

    /// Logs pictures (grey or RGB, PNG-encoded) at `step`, as one event.
    ///
    /// # Errors
    /// When a picture cannot be encoded or the file cannot be written.
    pub fn images(&mut self, step: i64, images: &[(&str, &Picture)]) -> Result<()> {
        let mut value = Vec::with_capacity(images.len());
        for &(tag, g) in images {
            let too_big = || anyhow::anyhow!("{tag}: a {}x{} picture is too large", g.width, g.height);
            value.push(Value {
                tag: tag.to_string(),
                value: Some(Content::Image(Image {
                    height: i32::try_from(g.height).map_err(|_| too_big())?,
                    width: i32::try_from(g.width).map_err(|_| too_big())?,
                    colorspace: g.channels as i32,
                    encoded_image_string: encode_png(g)?,
                })),
            });
        }
        self.write(step, What::Summary(Summary { value }))
    }

    /// Appends one event and flushes it to the file (readers see it at once).
    fn write(&mut self, step: i64, what: What) -> Result<()> {
        let event = Event {
            wall_time: wall_time(),
            step,
            what: Some(what),
        };
        self.buf.clear();
        record::frame(&event.encode_to_vec(), &mut self.buf);
        self.file
            .write_all(&self.buf)
            .and_then(|()| self.file.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// Seconds since the Unix epoch.
fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// This machine's name, as it may appear in a file name (`localhost` if unknown).
fn hostname() -> String {
    let raw = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    if name.is_empty() { "localhost".into() } else { name }
}

/// Reads the events of an event file (for tests and tools), checking every record's CRCs.
///
/// # Errors
/// When the file cannot be read, or a record is damaged or not an event.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let records = record::unframe(&bytes).with_context(|| format!("{}", path.display()))?;
    records
        .into_iter()
        .map(|r| Event::decode(r).with_context(|| format!("{}: not an event", path.display())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_files_never_collide() {
        let dir = std::env::temp_dir().join(format!("vae-tb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut a = EventWriter::create(&dir, None).unwrap();
        a.scalars(3, &[("epoch/test_neg_elbo", 101.5), ("epoch/lr", 1e-3)])
            .unwrap();
        let g = Picture {
            width: 2,
            height: 1,
            channels: 1,
            pixels: vec![0, 255],
        };
        a.images(3, &[("images/samples", &g)]).unwrap();
        let b = EventWriter::create(&dir, Some(4)).unwrap();
        assert_ne!(a.path(), b.path());
        let name = b.path().file_name().unwrap().to_str().unwrap();
        assert!(is_event_file(name), "{name}");
        let events = read_events(a.path()).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].what, Some(What::FileVersion("brain.Event:2".into())));
        let Some(What::Summary(s)) = &events[1].what else {
            panic!("{:?}", events[1])
        };
        assert_eq!((events[1].step, s.value[0].tag.as_str()), (3, "epoch/test_neg_elbo"));
        assert_eq!(s.value[1].value, Some(Content::SimpleValue(1e-3)));
        let Some(What::Summary(s)) = &events[2].what else {
            panic!()
        };
        let Some(Content::Image(img)) = &s.value[0].value else {
            panic!()
        };
        assert_eq!((img.width, img.height, img.colorspace), (2, 1, 1));
        assert_eq!(&img.encoded_image_string[1..4], b"PNG");
        let resumed = read_events(b.path()).unwrap();
        assert_eq!(resumed[1].step, 4);
        assert!(matches!(&resumed[1].what, Some(What::SessionLog(l)) if l.status == proto::SESSION_START));
    }
}
