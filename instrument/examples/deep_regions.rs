//! Rewrite a trace so that every span's region path is `a/a/…/a`, DEPTH levels deep (issue
//! #16's reproducer of quadratic region roll-ups): a program reaches such paths by nesting NVTX
//! ranges, or by naming them with many `/`. With `unique`, every 1000th span gets a path of
//! its own below that.
//!
//!     cargo run --release -p wattlens-instrument --example deep_regions -- IN.wlt OUT.wlt DEPTH [unique]

use std::path::Path;
use std::process::ExitCode;

fn run(args: &[String]) -> Result<(), String> {
    let [_, input, output, depth, rest @ ..] = args else {
        return Err("usage: deep_regions IN.wlt OUT.wlt DEPTH [unique]".into());
    };
    let depth: usize = depth
        .parse()
        .map_err(|_| format!("DEPTH {depth} is not a whole number"))?;
    let unique = rest.first().is_some_and(|s| s == "unique");
    let mut t = wattlens_instrument::read_trace_file(Path::new(input))
        .map_err(|e| e.to_string())?
        .trace;
    let base = vec!["a"; depth].join("/");
    let shared = t.strings.push(&base);
    for i in 0..t.spans.len() {
        let region = if unique && i % 1000 == 0 {
            t.strings.push(&format!("{base}/{i}"))
        } else {
            shared
        };
        t.spans[i].region = region;
    }
    let f = std::fs::File::create(output).map_err(|e| format!("cannot write {output}: {e}"))?;
    wattlens_instrument::TraceWriter::write_trace(std::io::BufWriter::new(f), &t)
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("deep_regions: {e}");
            ExitCode::from(2)
        }
    }
}
