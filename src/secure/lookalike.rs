//! When two device names look the same to a person. A trusted device is known by its key, but
//! people know it by its name, shown in the window and on the terminal; a device whose name
//! only *looks* like a trusted one must be refused as that name under another key, not shown
//! (or pinned) beside it.
//!
//! Two names look alike when, after each is reduced to what a reader sees, they are equal
//! whatever their case, or equal glyph for glyph. The reduction:
//!
//! - Unicode NFKC, which folds fullwidth letters (`ｌａｐｔｏｐ`), CJK compatibility
//!   ideographs (U+F9E1 for 李), Kangxi radicals (U+2F08 for 人) and ligatures into the
//!   characters they are drawn as;
//! - without the default-ignorable characters, drawn as nothing: zero-width spaces and
//!   joiners, bidi marks, soft hyphens, variation selectors, the Hangul fillers (U+3164 and
//!   kin), the combining grapheme joiner, tags;
//! - any run of white space as one space, none at either end;
//! - the Cyrillic, Greek and Armenian letters drawn like Latin ones (`а`, `е`, `о`, `р`, `с`,
//!   `Η`, `Ο`, `օ`, `ս`, ...) and the Latin ones drawn like others (`ɑ`, `ɡ`, a dotless `ı`)
//!   as those Latin letters, the katakana and the radicals drawn like Chinese characters
//!   (`ロ` and `囗` for `口`, `エ` for `工`, `ー` for `一`, ...) as those characters, and the
//!   hyphens and short dashes (U+2010 to U+2013, the minus sign) as a hyphen-minus.
//!
//! Glyph for glyph, before case is folded, a capital `I`, a digit `1`, a `|` and a `ǀ`
//! (U+01C0) are an `l`, a digit `0` and an ideographic `〇` are an `O`, and the letter pairs
//! a small font draws as one letter (`rn` as `m`, `vv` as `w`) are that letter, so `Iaptop`
//! is `laptop` and `rnini` is `mini`. A refusal is the
//! safe side of a doubt: a device with an honest name that looks like a trusted one is
//! renamed, never mistaken.

use unicode_normalization::UnicodeNormalization;

/// Whether `a` and `b` look like the same name to a person (see the module doc).
pub(crate) fn looks_alike(a: &str, b: &str) -> bool {
    let (a, b) = (seen(a), seen(b));
    folded(&a) == folded(&b) || glyphs(&a) == glyphs(&b)
}

/// `name` as a reader sees it, case kept.
fn seen(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut space = false;
    for c in name.nfkc().filter(|c| !is_drawn_as_nothing(*c)) {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(usual_form(c));
    }
    out
}

fn folded(seen: &str) -> String {
    seen.chars().flat_map(char::to_lowercase).collect()
}

fn glyphs(seen: &str) -> String {
    let single: String = seen
        .chars()
        .map(|c| match c {
            'I' | '1' | '|' | '\u{1C0}' => 'l',
            '0' | '〇' => 'O',
            c => c,
        })
        .collect();
    single.replace("rn", "m").replace("vv", "w")
}

/// The default-ignorable code points (Unicode's `Default_Ignorable_Code_Point`): a font
/// draws them as nothing.
fn is_drawn_as_nothing(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// The character `c` is drawn like in the script people expect: the Latin letter a Cyrillic
/// or Greek one looks like, the Chinese character a katakana one looks like; or `c` itself.
fn usual_form(c: char) -> char {
    match c {
        // The hyphens and dashes drawn as a short line, as a hyphen-minus (`desk‐1`, with
        // U+2010, is `desk-1`); NFKC already folds the fullwidth and small ones.
        '\u{2010}'..='\u{2013}' | '\u{2043}' | '\u{2212}' => '-',
        'ロ' | '囗' => '口',
        'エ' => '工',
        'カ' => '力',
        'タ' => '夕',
        'ハ' => '八',
        'ニ' => '二',
        'ト' => '卜',
        'ー' => '一',
        'А' | 'Α' => 'A',
        'В' | 'Β' => 'B',
        'С' | 'Ϲ' => 'C',
        'Е' | 'Ε' => 'E',
        'Н' | 'Η' => 'H',
        'І' | 'Ι' | 'Ӏ' => 'I',
        'Ј' => 'J',
        'К' | 'Κ' => 'K',
        'М' | 'Μ' => 'M',
        'Ν' => 'N',
        'О' | 'Ο' => 'O',
        'Р' | 'Ρ' => 'P',
        'Ԛ' => 'Q',
        'Ѕ' => 'S',
        'Т' | 'Τ' => 'T',
        'Х' | 'Χ' => 'X',
        'У' | 'Υ' => 'Y',
        'Ԝ' => 'W',
        'Ζ' => 'Z',
        'Օ' => 'O',
        'Ս' => 'U',
        'а' | 'α' | 'ɑ' => 'a',
        'с' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' => 'e',
        'ɡ' | 'ց' => 'g',
        'һ' | 'հ' => 'h',
        'і' | 'ι' | 'ı' => 'i',
        'ј' => 'j',
        'κ' => 'k',
        'ӏ' => 'l',
        'ո' => 'n',
        'о' | 'ο' | 'օ' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'υ' | 'ս' => 'u',
        'ν' => 'v',
        'ԝ' => 'w',
        'х' | 'χ' => 'x',
        'у' => 'y',
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_drawn_alike_look_alike() {
        for (trusted, lookalike) in [
            ("laptop", "Laptop"),
            ("laptop", "LAPTOP"),
            ("laptop", "lap\u{200B}top"),
            ("laptop", "laptop\u{202E}"),
            ("laptop", "lap\u{AD}top"),
            ("laptop", "ｌａｐｔｏｐ"),
            ("laptop", "l\u{0430}pt\u{043E}p"),
            ("laptop", "LΑPTΟP"),
            ("laptop", "Iaptop"),
            ("laptop", "lap\u{3164}top"),
            ("laptop", "laptop\u{FE0F}"),
            ("laptop", "laptop\u{E0041}"),
            ("laptop", "lap\u{34F}top"),
            ("laptop", " laptop\u{3000}"),
            ("work laptop", "work\u{A0}\u{3000} laptop"),
            ("desk-10", "desk-lO"),
            ("李明", "\u{F9E1}明"),
            ("人事部", "\u{2F08}事部"),
            ("王小明", "王小明\u{FE00}"),
            ("王工", "王エ"),
            ("一口", "ー\u{30ED}"),
            ("办公室-1", "办公室\u{2010}1"),
            ("办公室-1", "办公室\u{2013}1"),
            ("desk-1", "desk\u{2212}1"),
            ("desk-1", "desk\u{2011}1"),
            ("Wang-PC", "Wang\u{2012}PC"),
            ("laptop", "\u{1C0}aptop"),
            ("photo", "ph\u{585}to"),
            ("user-pc", "\u{57D}ser-pc"),
            ("OFFICE", "\u{555}FFICE"),
            ("laptop", "l\u{251}ptop"),
            ("gaming", "\u{261}aming"),
            ("mini", "m\u{131}ni"),
            ("mini-pc", "rnini-pc"),
            ("room", "roorn"),
            ("wifi", "vvifi"),
            ("一口", "一\u{56D7}"),
            ("Office0", "Office\u{3007}"),
        ] {
            assert!(
                looks_alike(trusted, lookalike),
                "{trusted:?} / {lookalike:?}"
            );
            assert!(
                looks_alike(lookalike, trusted),
                "{lookalike:?} / {trusted:?}"
            );
        }
    }

    #[test]
    fn names_that_differ_to_the_eye_do_not() {
        for (a, b) in [
            ("laptop", "laptops"),
            ("laptop", "lap top"),
            ("mail", "mall"),
            ("laptöp", "laptop"),
            ("李明", "李朋"),
            ("张三", "張三"),
            ("desk", ""),
            ("PC1", "PC2"),
            ("desk-1", "desk-11"),
            ("desk-1", "desk 1"),
            ("王工的电脑", "李明的笔记本"),
            ("客厅", "客厅2"),
            ("カメラ", "カメラ2"),
            ("mini", "mimi"),
            ("口", "日"),
            ("wifi", "wiwi"),
        ] {
            assert!(!looks_alike(a, b), "{a:?} / {b:?}");
        }
    }
}
