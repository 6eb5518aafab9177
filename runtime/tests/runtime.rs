//! Integration tests of wattlens-runtime (one test binary, modules inside).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod detect {
    use std::fs;

    use wattlens_runtime::detect::{nvidia_gpus, nvidia_gpus_under};

    #[test]
    fn finds_device_nodes_and_models_in_a_fake_root() {
        let root = std::env::temp_dir().join(format!("wattlens-detect-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("dev")).unwrap();
        for name in ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null"] {
            fs::write(root.join("dev").join(name), b"").unwrap();
        }
        let info = root.join("proc/driver/nvidia/gpus/0000:1a:00.0");
        fs::create_dir_all(&info).unwrap();
        fs::write(
            info.join("information"),
            "Model: \t\t NVIDIA H200\nIRQ: 42\nDevice Minor: \t 1\n",
        )
        .unwrap();
        let gpus = nvidia_gpus_under(&root);
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(gpus.len(), 2, "{gpus:?}");
        assert_eq!((gpus[0].minor, gpus[0].model.as_deref()), (0, None));
        assert_eq!(
            (gpus[1].minor, gpus[1].model.as_deref()),
            (1, Some("NVIDIA H200"))
        );
    }

    #[test]
    fn an_empty_root_has_no_gpus() {
        let root = std::env::temp_dir().join(format!("wattlens-nogpu-{}", std::process::id()));
        fs::create_dir_all(&root).unwrap();
        assert!(nvidia_gpus_under(&root).is_empty());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn the_gpu_machine_has_a_gpu() {
        let gpus = nvidia_gpus();
        assert!(!gpus.is_empty(), "no /dev/nvidiaN node found");
    }
}
