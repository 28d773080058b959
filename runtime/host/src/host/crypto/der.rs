//! Just enough DER (X.690) for what aws-lc-rs does not do itself: a `SEQUENCE` of unsigned
//! `INTEGER`s, read (ECDSA signatures, PKCS#1 public keys) and written (RSA keys from JWKs).

/// The content of the `SEQUENCE` that `input` starts with.
pub(super) fn read_sequence(input: &[u8]) -> Option<&[u8]> {
    let (&0x30, rest) = input.split_first()? else {
        return None;
    };
    let (len, rest) = read_length(rest)?;
    rest.get(..len)
}

/// The `INTEGER` that `input` starts with, as a magnitude without its sign-padding zero, and
/// what follows it.
pub(super) fn read_integer(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&0x02, rest) = input.split_first()? else {
        return None;
    };
    let (len, rest) = read_length(rest)?;
    let value = rest.get(..len)?;
    let value = value.strip_prefix(&[0]).unwrap_or(value);
    Some((value, &rest[len..]))
}

fn read_length(input: &[u8]) -> Option<(usize, &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first < 0x80 {
        return Some((usize::from(first), rest));
    }
    let count = usize::from(first & 0x7f);
    if count > size_of::<usize>() {
        return None;
    }
    let bytes = rest.get(..count)?;
    let len = bytes
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    Some((len, &rest[count..]))
}

/// A `SEQUENCE` of unsigned `INTEGER`s given as big-endian magnitudes.
pub(super) fn write_sequence(integers: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    for magnitude in integers {
        let trimmed = magnitude
            .iter()
            .position(|&b| b != 0)
            .map_or(&[0u8][..], |i| &magnitude[i..]);
        let mut content = Vec::with_capacity(trimmed.len() + 1);
        if trimmed[0] & 0x80 != 0 {
            content.push(0);
        }
        content.extend_from_slice(trimmed);
        body.push(0x02);
        write_length(&mut body, content.len());
        body.extend(content);
    }
    let mut out = vec![0x30];
    write_length(&mut out, body.len());
    out.extend(body);
    out
}

fn write_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip_with_sign_padding() {
        let der = write_sequence(&[&[0x80, 1], &[0, 0, 5]]);
        assert_eq!(der, [0x30, 8, 2, 3, 0, 0x80, 1, 2, 1, 5]);
        let body = read_sequence(&der).unwrap();
        let (a, rest) = read_integer(body).unwrap();
        let (b, _) = read_integer(rest).unwrap();
        assert_eq!((a, b), (&[0x80, 1][..], &[5][..]));
        assert_eq!(
            read_sequence(&[0x30, 0x89, 1]),
            None,
            "an absurd length is refused"
        );
        assert_eq!(
            read_integer(&[0x02, 5, 1]),
            None,
            "a short integer is refused"
        );
    }
}
