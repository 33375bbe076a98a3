use super::*;

fn rt(input: &str) -> String {
    parse(input.as_bytes()).unwrap().to_qmp()
}

fn err(input: &[u8]) -> String {
    parse(input).unwrap_err().to_string()
}

#[test]
fn prints_what_qemu_prints() {
    // Each pair was checked against QEMU 7.2's echo of an `id`.
    for (input, qemu) in [
        (
            r#"{"b":1,"a":[1,2,{}],"c":[]}"#,
            r#"{"b": 1, "a": [1, 2, {}], "c": []}"#,
        ),
        ("1.5e300", "1.5000000000000001e+300"),
        ("123456789012345678901234567890", "1.2345678901234568e+29"),
        ("18446744073709551615", "18446744073709551615"),
        ("-9223372036854775808", "-9223372036854775808"),
        ("0.1", "0.10000000000000001"),
        ("1e2", "100"),
        ("1.0", "1"),
        ("-0", "0"),
        ("-0.0", "-0"),
        ("1e-7", "9.9999999999999995e-08"),
        ("123456789.125", "123456789.125"),
        (r#""é\u00e9\ud83d\ude00""#, r#""\u00E9\u00E9\uD83D\uDE00""#),
        (r#""a\u0001\u007f/\"\\\t\n""#, r#""a\u0001\u007F/\"\\\t\n""#),
        (r#""\u0000""#, r#""\u0000""#),
        (r#"'it\'s'"#, r#""it's""#),
        ("[true, false, null]", "[true, false, null]"),
    ] {
        assert_eq!(rt(input), qemu, "{input}");
    }
}

#[test]
fn errors_as_qemu_words_them() {
    for (input, qemu) in [
        (
            &br#"{"execute" "x"}"#[..],
            "JSON parse error, missing : in object pair",
        ),
        (br#"{"execute": "x",}"#, "JSON parse error, expecting value"),
        (
            br#"{1: 2}"#,
            "JSON parse error, key is not a string in object",
        ),
        (br#"{"a": tru}"#, "JSON parse error, invalid keyword 'tru'"),
        (br#"{"a": 1, "a": 2}"#, "JSON parse error, duplicate key"),
        (
            br#"{"a": 1 "b": 2}"#,
            "JSON parse error, expected separator in dict",
        ),
        (br#"[1 2]"#, "JSON parse error, expected separator in list"),
        (br#"[1,]"#, "JSON parse error, expecting value"),
        (
            br#"{"a": "\x"}"#,
            "JSON parse error, invalid escape sequence in string",
        ),
        (
            br#""\ud800""#,
            "JSON parse error, \\ud800 is not a valid Unicode character",
        ),
        (
            br#""\udc00x""#,
            "JSON parse error, \\udc00 is not a valid Unicode character",
        ),
        (br#"{"a": @}"#, "JSON parse error, stray '@'"),
        (br#"{"a": 01}"#, "JSON parse error, stray '01'"),
        (b"\"a\x01b\"", "JSON parse error, stray '\"a\x01b\"'"),
        (b"\"\xff\"", "JSON parse error, stray '\"\u{fffd}\"'"),
        (br#"{"a": "x"#, "JSON parse error, premature end of input"),
        (b"-1e999", "JSON parse error, stray '-1e999'"),
    ] {
        assert_eq!(err(input), qemu, "{}", String::from_utf8_lossy(input));
    }
}

#[test]
fn depth_is_limited() {
    let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
    assert!(parse(ok.as_bytes()).is_ok());
    let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
    assert_eq!(parse(deep.as_bytes()), Err(ParseError::TooDeep));
    let deep_obj = "{\"a\":".repeat(MAX_DEPTH + 1);
    assert_eq!(parse(deep_obj.as_bytes()), Err(ParseError::TooDeep));
}

#[test]
fn several_values() {
    let v = parse_all(b" {} [1] 2 x");
    assert_eq!(v.len(), 4);
    assert_eq!(v[2], Ok(Json::Int(2)));
    assert!(v[3].is_err());
}

#[test]
fn g17_matches_printf() {
    for (f, s) in [
        (1e16, "10000000000000000"),
        (1e17, "1e+17"),
        (0.0001, "0.0001"),
        (0.00001, "1.0000000000000001e-05"),
        (-2.5, "-2.5"),
        (f64::MAX, "1.7976931348623157e+308"),
        (5e-324, "4.9406564584124654e-324"),
    ] {
        assert_eq!(format_g17(f), s);
    }
}
