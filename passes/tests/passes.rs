//! Integration tests of wattlens-passes on `.ll` fixtures (one test binary, modules inside).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod kernels {
    use std::path::Path;

    use wattlens_passes::{kernels_in_file, PassError};

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn finds_kernels_by_calling_convention_and_annotation_but_not_helpers() {
        let names = kernels_in_file(&fixture("two_kernels.ll")).unwrap();
        assert_eq!(names, vec!["scale".to_owned(), "add_one".to_owned()]);
    }

    #[test]
    fn a_missing_file_is_a_load_error_naming_it() {
        let err = kernels_in_file(&fixture("no_such.ll")).unwrap_err();
        let PassError::Load { path, .. } = &err;
        assert!(path.ends_with("no_such.ll"));
        assert!(err.to_string().contains("no_such.ll"));
    }

    #[test]
    fn invalid_ir_is_a_load_error() {
        let path = std::env::temp_dir().join(format!("wattlens-bad-{}.ll", std::process::id()));
        std::fs::write(&path, "define void @f( {").unwrap();
        let err = kernels_in_file(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(err.to_string().contains("cannot load LLVM IR"), "{err}");
    }
}
