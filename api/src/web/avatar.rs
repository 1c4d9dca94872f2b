//! Server-generated identicon avatars, for deployments that don't want to send users' email
//! hashes to Gravatar (or that have no outside access at all).
//!
//! The picture is drawn from the same hash Gravatar would be given (the md5 of the trimmed,
//! lower-cased email), so switching between the two keeps every user's identity stable per hash.
//! The output contains nothing but fixed markup and numbers derived from the hash's hex digits,
//! so it can be served as `image/svg+xml` without any escaping concerns.

use std::fmt::Write as _;

/// The avatar hash was not exactly 32 hexadecimal characters.
///
/// The offending input is deliberately not kept: it may be attacker-supplied text (it comes from
/// the URL), and an error that may end up in a log or a page should not echo it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an avatar hash must be exactly 32 hexadecimal characters")]
pub struct InvalidAvatarHash;

/// Side of the identicon grid, in cells.
const GRID_SIZE: usize = 5;
/// Columns that are drawn from hash bits; the rest mirror them (0,1,2 | 1,0).
const DISTINCT_COLUMNS: usize = GRID_SIZE.div_ceil(2);
/// Light grey, so that the (never pale) foreground always stands out.
const BACKGROUND: &str = "#f0f0f0";
/// Fixed saturation and lightness: only the hue varies, so no hash gives a washed-out or
/// near-black picture.
const SATURATION: f64 = 0.65;
const LIGHTNESS: f64 = 0.42;
/// Rendered size in CSS pixels; matches the Gravatar `s=48` the templates use.
const RENDERED_SIZE_PX: u32 = 48;

/// A 5×5, horizontally symmetric identicon as an SVG document, drawn from an email hash (32
/// lowercase hex chars, Gravatar's md5). Deterministic: the same hash always gives the same
/// picture.
///
/// Upper-case hex is accepted and treated as its lower-case equivalent.
///
/// # Errors
/// [`InvalidAvatarHash`] when `hash` is not exactly 32 hexadecimal characters.
pub fn identicon_svg(hash: &str) -> Result<String, InvalidAvatarHash> {
    let bytes = parse_hash(hash)?;
    let (red, green, blue) = foreground_rgb(&bytes);
    let grid = cell_grid(&bytes);

    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{RENDERED_SIZE_PX}\" \
         height=\"{RENDERED_SIZE_PX}\" viewBox=\"0 0 {GRID_SIZE} {GRID_SIZE}\" \
         shape-rendering=\"crispEdges\">\
         <rect width=\"{GRID_SIZE}\" height=\"{GRID_SIZE}\" fill=\"{BACKGROUND}\"/>\
         <g fill=\"#{red:02x}{green:02x}{blue:02x}\">"
    );
    for (row, cells) in grid.iter().enumerate() {
        for (column, &filled) in cells.iter().enumerate() {
            if filled {
                // Writing to a String cannot fail.
                let _ = write!(
                    svg,
                    "<rect x=\"{column}\" y=\"{row}\" width=\"1\" height=\"1\"/>"
                );
            }
        }
    }
    svg.push_str("</g></svg>");
    Ok(svg)
}

/// The 16 bytes of a 32-hex-digit hash, or an error for anything else.
fn parse_hash(hash: &str) -> Result<[u8; 16], InvalidAvatarHash> {
    // Checking the byte length and that every byte is ASCII hex also rules out any multi-byte
    // UTF-8, so the pairwise slicing below can never split a character.
    if hash.len() != 32 || !hash.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(InvalidAvatarHash);
    }
    let mut bytes = [0u8; 16];
    for (index, byte) in bytes.iter_mut().enumerate() {
        let pair = &hash[index * 2..index * 2 + 2];
        // `from_str_radix` accepts both cases, which is the normalisation to lower case.
        *byte = u8::from_str_radix(pair, 16).map_err(|_| InvalidAvatarHash)?;
    }
    Ok(bytes)
}

/// Which cells are filled, row by row. Bits come from bytes 2 and 3 (the hue uses bytes 0 and
/// 1, so colour and shape vary independently); the right-hand columns mirror the left-hand
/// ones, which is what makes identicons read as faces or emblems rather than noise.
fn cell_grid(bytes: &[u8; 16]) -> [[bool; GRID_SIZE]; GRID_SIZE] {
    let shape_bits = u16::from_be_bytes([bytes[2], bytes[3]]);
    let mut grid = [[false; GRID_SIZE]; GRID_SIZE];
    for (row, cells) in grid.iter_mut().enumerate() {
        for column in 0..DISTINCT_COLUMNS {
            let bit_index = row * DISTINCT_COLUMNS + column;
            let filled = shape_bits & (1 << bit_index) != 0;
            cells[column] = filled;
            cells[GRID_SIZE - 1 - column] = filled;
        }
    }
    grid
}

/// The foreground colour: the hue comes from the hash, saturation and lightness are fixed.
fn foreground_rgb(bytes: &[u8; 16]) -> (u8, u8, u8) {
    let hue_degrees = f64::from(u16::from_be_bytes([bytes[0], bytes[1]]) % 360);
    hsl_to_rgb(hue_degrees, SATURATION, LIGHTNESS)
}

/// The standard HSL → RGB conversion (CSS Color 4), with hue in degrees and the rest in 0..=1.
fn hsl_to_rgb(hue_degrees: f64, saturation: f64, lightness: f64) -> (u8, u8, u8) {
    let chroma = (1.0 - (2.0 * lightness - 1.0).abs()) * saturation;
    let hue_sector = hue_degrees / 60.0;
    let second_largest = chroma * (1.0 - (hue_sector % 2.0 - 1.0).abs());
    let (red, green, blue) = match hue_sector {
        h if h < 1.0 => (chroma, second_largest, 0.0),
        h if h < 2.0 => (second_largest, chroma, 0.0),
        h if h < 3.0 => (0.0, chroma, second_largest),
        h if h < 4.0 => (0.0, second_largest, chroma),
        h if h < 5.0 => (second_largest, 0.0, chroma),
        _ => (chroma, 0.0, second_largest),
    };
    let lightness_offset = lightness - chroma / 2.0;
    // Values stay within 0..=1 by construction; the clamp only guards against rounding, so
    // the cast can neither truncate nor lose a sign.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let to_channel =
        |value: f64| ((value + lightness_offset).clamp(0.0, 1.0) * 255.0).round() as u8;
    (to_channel(red), to_channel(green), to_channel(blue))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "c160f8cc69a4f0bf2b0362752353d060";
    const BOB: &str = "4b9bb80620f03eb3719e0a061c14283d";

    /// The filled cells of a rendered SVG, read back from its `<rect x=".." y=".." .../>`
    /// elements (the background rect has no x/y and is skipped).
    fn filled_cells(svg: &str) -> [[bool; GRID_SIZE]; GRID_SIZE] {
        let mut grid = [[false; GRID_SIZE]; GRID_SIZE];
        for rect in svg.split("<rect ").skip(1) {
            let attribute = |name: &str| -> Option<usize> {
                let start = rect.find(&format!("{name}=\""))? + name.len() + 2;
                let end = start + rect[start..].find('"')?;
                rect[start..end].parse().ok()
            };
            if let (Some(x), Some(y)) = (attribute("x"), attribute("y")) {
                grid[y][x] = true;
            }
        }
        grid
    }

    #[test]
    fn is_deterministic() {
        assert_eq!(identicon_svg(ALICE), identicon_svg(ALICE));
    }

    #[test]
    fn upper_case_hash_gives_the_same_picture() {
        assert_eq!(
            identicon_svg(&ALICE.to_ascii_uppercase()).unwrap(),
            identicon_svg(ALICE).unwrap()
        );
    }

    #[test]
    fn is_a_scaled_crisp_svg_document() {
        let svg = identicon_svg(ALICE).unwrap();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>"));
        assert!(svg.contains("viewBox=\"0 0 5 5\""));
        assert!(svg.contains("width=\"48\" height=\"48\""));
        assert!(svg.contains("shape-rendering=\"crispEdges\""));
    }

    #[test]
    fn rendered_rects_are_horizontally_symmetric_and_match_the_grid() {
        for hash in [ALICE, BOB, "0123456789abcdef0123456789abcdef"] {
            let svg = identicon_svg(hash).unwrap();
            let rendered = filled_cells(&svg);
            assert_eq!(rendered, cell_grid(&parse_hash(hash).unwrap()));
            for row in rendered {
                for column in 0..GRID_SIZE {
                    assert_eq!(row[column], row[GRID_SIZE - 1 - column], "{hash}");
                }
            }
        }
    }

    #[test]
    fn every_shape_bit_reaches_the_grid_symmetrically() {
        // One bit at a time: exactly one distinct cell (twice, mirrored, off the centre line).
        for bit_index in 0..GRID_SIZE * DISTINCT_COLUMNS {
            let mut bytes = [0u8; 16];
            [bytes[2], bytes[3]] = (1u16 << bit_index).to_be_bytes();
            let grid = cell_grid(&bytes);
            let (row, column) = (bit_index / DISTINCT_COLUMNS, bit_index % DISTINCT_COLUMNS);
            assert!(grid[row][column] && grid[row][GRID_SIZE - 1 - column]);
            let filled = grid.iter().flatten().filter(|&&cell| cell).count();
            assert_eq!(filled, if column == GRID_SIZE / 2 { 1 } else { 2 });
        }
    }

    #[test]
    fn different_hashes_give_different_pictures() {
        assert_ne!(identicon_svg(ALICE).unwrap(), identicon_svg(BOB).unwrap());
        // Differing only in the colour bytes, and only in the shape bytes.
        let base = "00000000000000000000000000000000";
        let other_colour = "00ff0000000000000000000000000000";
        let other_shape = "0000ff00000000000000000000000000";
        let base_svg = identicon_svg(base).unwrap();
        assert_ne!(base_svg, identicon_svg(other_colour).unwrap());
        assert_ne!(base_svg, identicon_svg(other_shape).unwrap());
    }

    #[test]
    fn colour_is_never_pale_or_black() {
        for hue in (0..360).step_by(5) {
            let (red, green, blue) = hsl_to_rgb(f64::from(hue), SATURATION, LIGHTNESS);
            let brightest = red.max(green).max(blue);
            let darkest = red.min(green).min(blue);
            assert!((0x80..=0xb8).contains(&brightest), "hue {hue}");
            assert!(darkest <= 0x40, "hue {hue}");
        }
        assert_eq!(hsl_to_rgb(0.0, 1.0, 0.5), (255, 0, 0));
        assert_eq!(hsl_to_rgb(120.0, 1.0, 0.5), (0, 255, 0));
        assert_eq!(hsl_to_rgb(240.0, 1.0, 0.5), (0, 0, 255));
    }

    #[test]
    fn output_holds_only_markup_and_hex_derived_numbers() {
        let svg = identicon_svg(BOB).unwrap();
        let without_markup = svg
            .replace("http://www.w3.org/2000/svg", "")
            .replace("shape-rendering", "")
            .replace("crispEdges", "")
            .replace("viewBox", "")
            .replace("xmlns", "");
        // What is left: tag and attribute names, numbers, quotes and the colours.
        assert!(without_markup
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " <>/=\"#".contains(c)));
    }

    #[test]
    fn invalid_hashes_are_rejected() {
        for bad in [
            "",
            "c160f8cc69a4f0bf2b0362752353d06",   // 31 characters
            "c160f8cc69a4f0bf2b0362752353d0600", // 33 characters
            "g160f8cc69a4f0bf2b0362752353d060",  // not hex
            " c160f8cc69a4f0bf2b0362752353d06",  // whitespace
            "\"><script>alert(1)</script>aaaaa", // 32 characters of markup
            "\"><script>",
            "éééééééééééééééé", // 32 bytes of UTF-8, but not hex
        ] {
            assert_eq!(identicon_svg(bad), Err(InvalidAvatarHash), "{bad:?}");
        }
    }
}
