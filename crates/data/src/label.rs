//! Classes as users name them: by number, or by the name the data give the class (a class
//! folder, a table's text label), and how a split names the classes it holds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A class as the user wrote it: a label number (0-255) or a class name. Stored as written
/// (a JSON number or string), resolved against the data's class names when used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassLabel {
    /// A label number (a digit, a class index, a table's integer label).
    Number(u8),
    /// A class name (a class folder's name, a table's text label).
    Name(String),
}

impl FromStr for ClassLabel {
    type Err = String;

    /// `"3"` is the number 3, anything else a name; an empty text is refused.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("an empty label: give a class number or name".into());
        }
        Ok(s.parse::<u8>()
            .map_or_else(|_| ClassLabel::Name(s.to_string()), ClassLabel::Number))
    }
}

impl fmt::Display for ClassLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClassLabel::Number(n) => write!(f, "{n}"),
            ClassLabel::Name(s) => f.write_str(s),
        }
    }
}

impl ClassLabel {
    /// The label number this names in data whose classes are named `names` (`None`: the
    /// data number their classes only). A name the data give wins over a number with the
    /// same spelling (a class folder named `7`).
    pub fn resolve(&self, names: Option<&[String]>) -> Result<u8, String> {
        let spelt = self.to_string();
        if let Some(i) = names.and_then(|n| n.iter().position(|c| *c == spelt)) {
            return u8::try_from(i).map_err(|_| format!("class {spelt} is beyond the 256 labels"));
        }
        match (self, names) {
            (ClassLabel::Number(n), _) => Ok(*n),
            (ClassLabel::Name(s), Some(names)) => {
                Err(format!("no class is named {s} (classes: {})", all_numbered(names)))
            }
            (ClassLabel::Name(s), None) => Err(format!(
                "{s} is not a label number (0-255), and the data do not name their classes"
            )),
        }
    }
}

/// `labels` as a list for messages: each number with its class name where the data name
/// them (`0 benign, 1 malignant`), else the numbers (`3, 7, 200`).
pub fn numbered(labels: &[u8], names: Option<&[String]>) -> String {
    labels
        .iter()
        .map(|&l| match names.and_then(|n| n.get(l as usize)) {
            Some(name) => format!("{l} {name}"),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every class of `names` with its number: `0 benign, 1 malignant`.
pub fn all_numbered(names: &[String]) -> String {
    let all: Vec<u8> = (0..=255u8).take(names.len()).collect();
    numbered(&all, Some(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["benign".into(), "malignant".into()]
    }

    #[test]
    fn names_and_numbers_resolve_against_the_data() {
        let n = names();
        let parse = |s: &str| s.parse::<ClassLabel>().unwrap();
        assert_eq!(parse("malignant").resolve(Some(&n)), Ok(1));
        assert_eq!(parse("0").resolve(Some(&n)), Ok(0));
        assert_eq!(parse("200").resolve(None), Ok(200));
        let e = parse("cyst").resolve(Some(&n)).unwrap_err();
        assert_eq!(e, "no class is named cyst (classes: 0 benign, 1 malignant)");
        assert!(parse("cyst").resolve(None).unwrap_err().contains("not a label number"));
        // A class folder named "7" among others is the 7 the user means.
        let folders = vec!["3".to_string(), "7".to_string()];
        assert_eq!(parse("7").resolve(Some(&folders)), Ok(1));
        assert!("".parse::<ClassLabel>().is_err());
        assert_eq!(parse("256"), ClassLabel::Name("256".into()));
    }

    #[test]
    fn labels_are_stored_as_written() {
        let json = serde_json::to_string(&[ClassLabel::Number(3), ClassLabel::Name("b".into())]).unwrap();
        assert_eq!(json, r#"[3,"b"]"#);
        let back: Vec<ClassLabel> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, [ClassLabel::Number(3), ClassLabel::Name("b".into())]);
    }

    #[test]
    fn lists_name_the_classes_where_the_data_do() {
        assert_eq!(numbered(&[0, 1], Some(&names())), "0 benign, 1 malignant");
        assert_eq!(numbered(&[3, 7, 200], None), "3, 7, 200");
    }
}
