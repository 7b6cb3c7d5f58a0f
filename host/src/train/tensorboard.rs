//! TensorBoard event files: scalars (losses, learning rate, evaluation metrics) and text (live
//! events) in the format TensorBoard reads — TFRecord framing (length, masked CRC32C) around
//! `tensorflow.Event` protocol buffers, encoded here field by field.
use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

/// Appends events to one `events.out.tfevents.*` file.
pub struct TensorBoard {
    out: BufWriter<File>,
    path: PathBuf,
}

/// Protocol-buffer wire encoding of the few fields used.
mod pb {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
        varint(out, ((field as u64) << 3) | wire as u64);
    }
    pub fn double(out: &mut Vec<u8>, field: u32, v: f64) {
        key(out, field, 1);
        out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn float(out: &mut Vec<u8>, field: u32, v: f32) {
        key(out, field, 5);
        out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn int(out: &mut Vec<u8>, field: u32, v: i64) {
        key(out, field, 0);
        varint(out, v as u64);
    }
    pub fn bytes(out: &mut Vec<u8>, field: u32, v: &[u8]) {
        key(out, field, 2);
        varint(out, v.len() as u64);
        out.extend_from_slice(v);
    }
}

/// TFRecord's checksum: CRC32C, rotated and offset.
fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its checksum, the data, the data's checksum.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// An `Event` (wall_time = 1, step = 2) holding a `Summary` (field 5) with one value.
fn summary_event(step: u64, value: &[u8]) -> Vec<u8> {
    let mut summary = Vec::new();
    pb::bytes(&mut summary, 1, value);
    let mut ev = Vec::new();
    pb::double(&mut ev, 1, now());
    pb::int(&mut ev, 2, step as i64);
    pb::bytes(&mut ev, 5, &summary);
    ev
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl TensorBoard {
    /// Starts a new event file in `dir` (TensorBoard reads every file of a directory in order).
    pub fn create(dir: &Path) -> std::io::Result<TensorBoard> {
        std::fs::create_dir_all(dir)?;
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        let stamp = now();
        let path = dir.join(format!(
            "events.out.tfevents.{}.{}.{}.{}",
            stamp as u64,
            if host.is_empty() { "retort" } else { &host },
            std::process::id(),
            (stamp.fract() * 1e6) as u64
        ));
        let mut tb = TensorBoard { out: BufWriter::new(File::create(&path)?), path };
        let mut ev = Vec::new();
        pb::double(&mut ev, 1, stamp);
        pb::bytes(&mut ev, 3, b"brain.Event:2");
        tb.out.write_all(&record(&ev))?;
        tb.out.flush()?;
        Ok(tb)
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A scalar `tag` at `step` (Summary.Value: tag = 1, simple_value = 2).
    pub fn scalar(&mut self, tag: &str, step: u64, value: f64) -> std::io::Result<()> {
        let mut v = Vec::new();
        pb::bytes(&mut v, 1, tag.as_bytes());
        pb::float(&mut v, 2, value as f32);
        self.out.write_all(&record(&summary_event(step, &v)))
    }

    /// A text entry `tag` at `step`, as TensorBoard's text plugin stores it: a string tensor
    /// (TensorProto: dtype = 1, DT_STRING = 7; string_val = 8) with plugin metadata "text".
    pub fn text(&mut self, tag: &str, step: u64, text: &str) -> std::io::Result<()> {
        let mut plugin = Vec::new();
        pb::bytes(&mut plugin, 1, b"text");
        let mut meta = Vec::new();
        pb::bytes(&mut meta, 1, &plugin);
        let mut tensor = Vec::new();
        pb::int(&mut tensor, 1, 7);
        pb::bytes(&mut tensor, 2, &[]);
        pb::bytes(&mut tensor, 8, text.as_bytes());
        let mut v = Vec::new();
        pb::bytes(&mut v, 1, tag.as_bytes());
        pb::bytes(&mut v, 9, &meta);
        pb::bytes(&mut v, 8, &tensor);
        self.out.write_all(&record(&summary_event(step, &v)))
    }

    /// Makes what was written visible to a running TensorBoard.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_varint_match_known_values() {
        // CRC32C check value of "123456789" is 0xE3069283.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        let mut v = Vec::new();
        pb::varint(&mut v, 300);
        assert_eq!(v, [0xAC, 0x02]);
    }

    #[test]
    fn records_frame_and_checksum_their_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut tb = TensorBoard::create(dir.path()).unwrap();
        tb.scalar("train/loss", 3, 0.5).unwrap();
        tb.text("events", 3, "swap").unwrap();
        tb.flush().unwrap();
        let bytes = std::fs::read(tb.path()).unwrap();
        let mut at = 0;
        let mut n = 0;
        while at < bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            assert_eq!(crc, masked_crc(&bytes[at..at + 8]));
            let data = &bytes[at + 12..at + 12 + len];
            let dcrc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
            assert_eq!(dcrc, masked_crc(data));
            at += 16 + len;
            n += 1;
        }
        assert_eq!(n, 3, "file version, scalar, text");
        let tail = &bytes[bytes.len() - 40..];
        assert!(tail.windows(4).any(|w| w == b"swap"));
    }
}
