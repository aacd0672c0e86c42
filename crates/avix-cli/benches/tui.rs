//! TUI redraw cost: 1,000 agents listed and 50 streaming output, a 200×50 screen, alternating
//! between the list and one agent's output (`avix_cli::tui_redraw_cost`).
//!
//! ```sh
//! cargo bench -p avix-cli --bench tui
//! ```

fn main() {
    // Warm up, then measure.
    let _ = avix_cli::tui_redraw_cost(1000, 50, 50);
    for (agents, streaming) in [(10, 1), (1000, 50)] {
        let per = avix_cli::tui_redraw_cost(agents, streaming, 2000);
        println!(
            "tui redraw, {agents} agents listed, {streaming} streaming: {:.1} µs per frame ({:.0} frames/s)",
            per.as_secs_f64() * 1e6,
            1.0 / per.as_secs_f64().max(1e-9)
        );
    }
}
