//! The IDX format of MNIST-style datasets (LeCun): a magic number (two zero bytes, a type code,
//! the number of dims), big-endian u32 dims, then the elements. Gzipped or raw.
use std::{fs::File, io::Read, path::Path};

use flate2::read::GzDecoder;

use super::DataError;

/// The u8 elements and dims of one IDX file.
#[derive(Debug, Clone)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

const TYPE_U8: u8 = 0x08;

/// Reads an IDX file of unsigned bytes (`.gz` is decompressed), validating magic, dims and length.
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let bytes = read_file(path)?;
    parse_idx(&bytes).map_err(|reason| DataError::Format { path: path.display().to_string(), reason })
}

/// A file's bytes, decompressed when its name ends in `.gz`.
pub fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    let p = path.display().to_string();
    let file = File::open(path).map_err(|error| DataError::Io { path: p.clone(), error })?;
    let mut bytes = Vec::new();
    let gz = path.extension().is_some_and(|e| e == "gz");
    let r = if gz { GzDecoder::new(file).read_to_end(&mut bytes) } else { { file }.read_to_end(&mut bytes) };
    let reason = |e: std::io::Error| if gz { format!("not a valid gzip stream ({e})") } else { e.to_string() };
    r.map_err(|e| DataError::Format { path: p, reason: reason(e) })?;
    Ok(bytes)
}

/// Parses IDX bytes; errors say what is wrong.
pub fn parse_idx(bytes: &[u8]) -> Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!("too short for an IDX header ({} bytes)", bytes.len()));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "bad magic number {:02x}{:02x}{:02x}{:02x}: not an IDX file",
            bytes[0], bytes[1], bytes[2], bytes[3]
        ));
    }
    if bytes[2] != TYPE_U8 {
        return Err(format!("element type 0x{:02x} is not supported (only unsigned bytes, 0x08)", bytes[2]));
    }
    let ndims = bytes[3] as usize;
    if ndims == 0 || ndims > 4 {
        return Err(format!("{ndims} dimensions: expected 1 to 4"));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(format!("truncated header: {ndims} dims need {header} bytes, file has {}", bytes.len()));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| u32::from_be_bytes([bytes[4 + 4 * i], bytes[5 + 4 * i], bytes[6 + 4 * i], bytes[7 + 4 * i]]) as usize)
        .collect();
    let n: usize = dims.iter().product();
    let body = &bytes[header..];
    if body.len() != n {
        let what = if body.len() < n { "truncated" } else { "trailing bytes" };
        return Err(format!("{what}: dims {dims:?} need {n} bytes of data, found {}", body.len()));
    }
    Ok(IdxArray { dims, data: body.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, TYPE_U8, dims.len() as u8];
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend(data);
        v
    }

    #[test]
    fn parses_and_validates() {
        let a = parse_idx(&idx(&[2, 3], &[1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
        assert!(parse_idx(&idx(&[2, 3], &[1, 2, 3])).unwrap_err().contains("truncated"));
        assert!(parse_idx(&idx(&[2], &[1, 2, 3])).unwrap_err().contains("trailing"));
        let mut bad = idx(&[1], &[0]);
        bad[0] = 0x1f;
        assert!(parse_idx(&bad).unwrap_err().contains("magic"));
        let mut float = idx(&[1], &[0]);
        float[2] = 0x0d;
        assert!(parse_idx(&float).unwrap_err().contains("0x0d"));
        assert!(parse_idx(&[0, 0, 8]).unwrap_err().contains("too short"));
        assert!(parse_idx(&[0, 0, 8, 3, 0, 0]).unwrap_err().contains("truncated header"));
    }
}
