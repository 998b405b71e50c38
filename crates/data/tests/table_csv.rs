//! CSV tables: values, labels and classes, every refusal (naming the file, the row as in the
//! file and the column), and the standardizer.

use std::path::PathBuf;

use vae_data::table::{self, Standardizer, Table};
use vae_data::{Limits, StandardizeError, TableError};

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vae-data-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn read(name: &str, text: &str, label: Option<&str>) -> Result<Table, TableError> {
    table::read_csv(write(name, text), &Limits::default(), label)
}

fn err(name: &str, text: &str, label: Option<&str>) -> TableError {
    let e = read(name, text, label).unwrap_err();
    assert!(e.to_string().contains(name), "{e}");
    e
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn numeric_columns_are_read_row_major() {
    let t = read("plain.csv", "x, y ,z\n1,2.5,-3e2\n 4 ,5,6\n7,8,9.25\n", None).unwrap();
    assert_eq!(t.columns, names(&["x", "y", "z"]));
    assert_eq!(t.rows, 3);
    assert_eq!(t.values, vec![1.0, 2.5, -300.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.25]);
    assert_eq!((t.labels, t.classes), (None, None));
    // A byte order mark (as Excel writes) is not part of the first name.
    let t = read("bom.csv", "\u{feff}x,y\n1,2\n3,4\n", Some("x")).unwrap();
    assert_eq!((t.columns, t.labels), (names(&["y"]), Some(vec![1, 3])));
    // Quoted fields and CRLF line ends are CSV too; a final newline is optional.
    let t = read("quoted.csv", "\"a\",\"b\"\r\n\"1\",2\r\n3,\"4\"", None).unwrap();
    assert_eq!(t.values, vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(t.row(1), Some(&[3.0, 4.0][..]));
    assert_eq!(t.row(2), None);
    assert_eq!(t.iter_rows().count(), 2);
}

#[test]
fn integer_labels_are_the_labels() {
    let t = read("int.csv", "a,label,b\n1,3,2\n2,0,4\n3,255,1\n4,3.0,0\n", Some("label")).unwrap();
    assert_eq!(t.columns, names(&["a", "b"]));
    assert_eq!(t.values, vec![1.0, 2.0, 2.0, 4.0, 3.0, 1.0, 4.0, 0.0]);
    assert_eq!(t.labels, Some(vec![3, 0, 255, 3]));
    assert_eq!(t.classes, None);
}

#[test]
fn text_labels_are_classes_in_sorted_order() {
    let t = read(
        "textlabels.csv",
        "f,kind\n1,setosa\n2,virginica\n3,versicolor\n4,setosa\n",
        Some("kind"),
    )
    .unwrap();
    assert_eq!(t.classes, Some(names(&["setosa", "versicolor", "virginica"])));
    assert_eq!(t.labels, Some(vec![0, 2, 1, 0]));
    // Numbers outside 0..=255 (an outlier detector's -1 / 1) are classes in numeric order.
    let t = read("pm.csv", "f,y\n1,1\n2,-1\n3,10\n4,1\n", Some("y")).unwrap();
    assert_eq!(t.classes, Some(names(&["-1", "1", "10"])));
    assert_eq!(t.labels, Some(vec![1, 0, 2, 1]));
}

#[test]
fn more_than_256_classes_are_refused() {
    let mut text = String::from("f,id\n");
    for i in 0..300 {
        text += &format!("{i},c{i}\n");
    }
    let e = err("classes.csv", &text, Some("id"));
    assert!(matches!(e, TableError::TooManyClasses { .. }), "{e}");
    assert!(e.to_string().contains("label column 'id' holds more than 256"), "{e}");
}

#[test]
fn text_in_a_numeric_column_names_the_row_and_column() {
    let e = err("text.csv", "a,b,c\n1,2,3\n4,five,6\n", None);
    assert!(
        e.to_string()
            .ends_with("text.csv: row 3, column 'b': 'five' is not a number"),
        "{e}"
    );
    assert!(matches!(e, TableError::NotANumber { row: 3, .. }), "{e}");
    // A blank line still counts as a row of the file.
    let e = err("blank.csv", "a,b\n1,2\n\n3,x\n", None);
    assert!(matches!(e, TableError::NotANumber { row: 4, .. }), "{e}");
    let e = err("blank2.csv", "a,b\r\n1,2\r\n\r\n\r\n3,x\r\n", None);
    assert!(matches!(e, TableError::NotANumber { row: 5, .. }), "{e}");
    // And so do lines inside a quoted field.
    let e = err("multiline.csv", "a,b\n1,\"2\n\"\n3,4\n5,?\n", None);
    assert!(matches!(e, TableError::NotANumber { row: 5, .. }), "{e}");
    // The label column being text does not excuse the others.
    let e = err("text2.csv", "a,y\n1,cat\nno,dog\n", Some("y"));
    assert!(
        matches!(&e, TableError::NotANumber { row: 3, column, .. } if column == "a"),
        "{e}"
    );
    let long = "z".repeat(1000);
    let e = err("long.csv", &format!("a,b\n1,2\n3,{long}\n"), None);
    assert!(e.to_string().len() < 200, "{e}");
}

#[test]
fn empty_cells_are_refused() {
    let e = err("emptycell.csv", "a,b\n1,2\n3,\n", None);
    assert!(matches!(e, TableError::EmptyCell { row: 3, .. }), "{e}");
    assert!(e.to_string().contains("row 3, column 'b': empty cell"), "{e}");
    let e = err("emptylabel.csv", "a,y\n1,2\n3,\n", Some("y"));
    assert!(
        matches!(&e, TableError::EmptyCell { column, .. } if column == "y"),
        "{e}"
    );
}

#[test]
fn ragged_rows_are_refused_with_the_counts() {
    let e = err("ragged.csv", "a,b,c\n1,2,3\n4,5\n", None);
    assert!(
        e.to_string()
            .ends_with("ragged.csv: row 3 has 2 fields, the header has 3"),
        "{e}"
    );
    let e = err("ragged2.csv", "a,b\n1,2\n3,4\n5,6,7\n", None);
    assert!(
        matches!(
            e,
            TableError::Ragged {
                row: 4,
                found: 3,
                expected: 2,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn nan_and_infinities_are_refused() {
    for (cell, row) in [("NaN", 2), ("nan", 2), ("inf", 2), ("-Infinity", 2), ("1e999", 2)] {
        let e = err("nan.csv", &format!("a,b\n1,{cell}\n3,4\n"), None);
        assert!(
            matches!(&e, TableError::NotFinite { row: r, column, .. } if *r == row && column == "b"),
            "{e}"
        );
        assert!(
            e.to_string().contains(&format!("'{cell}' is not a finite number")),
            "{e}"
        );
    }
}

#[test]
fn a_constant_column_is_refused_by_name() {
    let e = err("const.csv", "a,flat,c\n1,7,3\n2,7,1\n3,7.0,2\n", None);
    assert!(
        matches!(&e, TableError::ConstantColumn { column, .. } if column == "flat"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("column 'flat' holds the same value (7) in every row"),
        "{e}"
    );
}

#[test]
fn empty_tables_are_refused() {
    for (name, text) in [("empty.csv", ""), ("newline.csv", "\n")] {
        let e = err(name, text, None);
        assert!(
            matches!(
                e,
                TableError::Empty {
                    what: "no header row",
                    ..
                }
            ),
            "{e}"
        );
    }
    let e = err("header.csv", "a,b\n", None);
    assert!(
        e.to_string().contains("empty table: a header row and no data rows"),
        "{e}"
    );
    let e = err("onlylabel.csv", "y\n1\n2\n", Some("y"));
    assert!(matches!(e, TableError::NoFeatures { .. }), "{e}");
}

#[test]
fn a_missing_label_column_lists_the_columns() {
    let e = err("nolabel.csv", "a,b,c\n1,2,3\n2,3,4\n", Some("class"));
    assert!(
        e.to_string()
            .ends_with("nolabel.csv: no label column 'class' (the columns are: a, b, c)"),
        "{e}"
    );
}

#[test]
fn duplicate_and_unnamed_columns_are_refused() {
    let e = err("dup.csv", "a,b,a\n1,2,3\n2,3,4\n", None);
    assert!(
        e.to_string()
            .ends_with("dup.csv: the header names column 'a' twice (columns 1 and 3)"),
        "{e}"
    );
    // What pandas' to_csv writes by default: an unnamed index column first.
    let e = err("index.csv", ",a,b\n0,1,2\n1,3,4\n", None);
    assert!(matches!(e, TableError::UnnamedColumn { index: 1, .. }), "{e}");
    assert!(e.to_string().contains("index=False"), "{e}");
}

#[test]
fn a_file_larger_than_the_limit_is_refused_from_its_size() {
    let path = write("large.csv", "a,b\n1,2\n3,4\n");
    let e = table::read_csv(&path, &Limits { max_data_bytes: 8 }, None).unwrap_err();
    assert!(matches!(e, TableError::TooLarge { size: 12, limit: 8, .. }), "{e}");
    assert!(e.to_string().contains("refused before reading"), "{e}");
    assert!(table::read_csv(&path, &Limits { max_data_bytes: 12 }, None).is_ok());
}

#[test]
fn invalid_utf8_and_missing_files_are_named() {
    let dir = std::env::temp_dir().join(format!("vae-data-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("latin1.csv");
    std::fs::write(&path, b"a,b\n1,2\n3,\xe9\n").unwrap();
    let e = table::read_csv(&path, &Limits::default(), None).unwrap_err();
    assert!(e.to_string().contains("latin1.csv"), "{e}");
    let e = table::read_csv(dir.join("absent.csv"), &Limits::default(), None).unwrap_err();
    assert!(
        matches!(e, TableError::Io { .. }) && e.to_string().contains("absent.csv"),
        "{e}"
    );
}

#[test]
fn the_standardizer_fits_population_statistics_and_inverts() {
    let t = read("std.csv", "a,b\n1,10\n2,20\n3,30\n4,40\n", None).unwrap();
    let s = Standardizer::fit_table(&t).unwrap();
    assert_eq!(s.mean, vec![2.5, 25.0]);
    // Population variance of 1..4 is 1.25.
    assert!((s.std[0] - 1.25f64.sqrt()).abs() < 1e-12 && (s.std[1] - 125f64.sqrt()).abs() < 1e-12);
    let mut x: Vec<f32> = t.values.iter().map(|&v| v as f32).collect();
    s.apply(&mut x).unwrap();
    let z = s.standardize(&t.values).unwrap();
    assert_eq!(x, z);
    let mean0: f32 = x.iter().step_by(2).sum::<f32>() / 4.0;
    let var0: f32 = x.iter().step_by(2).map(|v| v * v).sum::<f32>() / 4.0;
    assert!(mean0.abs() < 1e-6 && (var0 - 1.0).abs() < 1e-5);
    s.invert(&mut x).unwrap();
    for (a, b) in x.iter().zip(&t.values) {
        assert!((f64::from(*a) - b).abs() < 1e-5, "{a} vs {b}");
    }
    // Fitted on some rows only (a training split).
    let train = [0usize, 1];
    let s = Standardizer::fit(train.iter().filter_map(|&i| t.row(i)), &t.columns).unwrap();
    assert_eq!(s.mean, vec![1.5, 15.0]);
}

#[test]
fn the_standardizer_refuses_zero_deviation_and_wrong_widths() {
    let cols = names(&["a", "flat"]);
    let rows: [&[f64]; 2] = [&[1.0, 5.0], &[2.0, 5.0]];
    let e = Standardizer::fit(rows, &cols).unwrap_err();
    assert_eq!(
        e,
        StandardizeError::ZeroStd {
            column: "flat".into(),
            std: 0.0
        }
    );
    assert_eq!(
        e.to_string(),
        "column 'flat' has standard deviation 0 over the rows fitted: it cannot be standardised"
    );
    assert_eq!(
        Standardizer::fit(std::iter::empty(), &cols).unwrap_err(),
        StandardizeError::NoRows
    );
    let rows: [&[f64]; 1] = [&[1.0]];
    assert!(matches!(
        Standardizer::fit(rows, &cols),
        Err(StandardizeError::Width { .. })
    ));
    let s = Standardizer {
        mean: vec![0.0, 1.0],
        std: vec![1.0, 2.0],
    };
    assert!(matches!(
        s.apply(&mut [1.0; 3]),
        Err(StandardizeError::Width { width: 2, len: 3 })
    ));
    let bad = Standardizer {
        mean: vec![0.0],
        std: vec![0.0],
    };
    assert!(matches!(bad.apply(&mut [1.0]), Err(StandardizeError::Invalid { .. })));
    let bad = Standardizer {
        mean: vec![0.0, 1.0],
        std: vec![1.0],
    };
    assert!(matches!(
        bad.invert(&mut [1.0, 2.0]),
        Err(StandardizeError::Invalid { .. })
    ));
}

#[test]
fn the_standardizer_round_trips_through_serde() {
    let s = Standardizer {
        mean: vec![0.1, -3.5, 1e10],
        std: vec![0.3, 2.0, 1e-3],
    };
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<Standardizer>(&json).unwrap(), s);
    assert!(json.contains("\"mean\"") && json.contains("\"std\""), "{json}");
}
