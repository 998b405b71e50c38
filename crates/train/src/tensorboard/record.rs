//! TFRecord framing, the container of TensorBoard's event files: each record is its length
//! (u64, little-endian), the masked CRC-32C of those 8 bytes, the payload, and the masked
//! CRC-32C of the payload (both u32, little-endian).

/// CRC-32C (Castagnoli) masked as TFRecord stores it: rotated right by 15 bits, plus a
/// constant (so that a CRC of data holding CRCs is not trivially related to them).
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends the record framing `payload` to `out`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc32c(payload).to_le_bytes());
}

/// A record that does not check out.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The data ends inside a record.
    #[error("truncated record at byte {0}")]
    Truncated(usize),
    /// A stored CRC differs from the data's.
    #[error("CRC mismatch in the record at byte {0}")]
    Crc(usize),
}

/// Splits `bytes` into the payloads of its records, checking both CRCs of each.
///
/// # Errors
/// [`RecordError`] at the first record that is cut short or damaged.
pub fn unframe(bytes: &[u8]) -> Result<Vec<&[u8]>, RecordError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let header = rest.get(..12).ok_or(RecordError::Truncated(at))?;
        let crc = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
        if masked_crc32c(&header[..8]) != crc(&header[8..12]) {
            return Err(RecordError::Crc(at));
        }
        let len = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
        let len = usize::try_from(len).map_err(|_| RecordError::Truncated(at))?;
        let end = len.checked_add(16).ok_or(RecordError::Truncated(at))?;
        let record = rest.get(..end).ok_or(RecordError::Truncated(at))?;
        let payload = &record[12..12 + len];
        if masked_crc32c(payload) != crc(&record[12 + len..]) {
            return Err(RecordError::Crc(at));
        }
        out.push(payload);
        at += end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value_and_mask() {
        // The standard check value of CRC-32C (Castagnoli), and that value masked.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(
            masked_crc32c(b"123456789"),
            0xe306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn a_known_record() {
        // The record of the 3-byte payload "abc", bytes computed independently (Python,
        // bit-by-bit CRC-32C with polynomial 0x82f63b78).
        let mut out = Vec::new();
        frame(b"abc", &mut out);
        assert_eq!(
            out,
            [
                3, 0, 0, 0, 0, 0, 0, 0, // length
                176, 153, 73, 14, // masked CRC of the length
                b'a', b'b', b'c', // payload
                110, 87, 241, 33, // masked CRC of the payload
            ]
        );
        assert_eq!(unframe(&out).unwrap(), vec![&b"abc"[..]]);
    }

    #[test]
    fn damage_is_found() {
        let mut out = Vec::new();
        frame(b"hello", &mut out);
        frame(b"", &mut out);
        assert_eq!(unframe(&out).unwrap(), vec![&b"hello"[..], &b""[..]]);
        let mut bad = out.clone();
        bad[13] ^= 1;
        assert_eq!(unframe(&bad), Err(RecordError::Crc(0)));
        assert_eq!(unframe(&out[..out.len() - 1]), Err(RecordError::Truncated(21)));
    }
}
