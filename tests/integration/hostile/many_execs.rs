//! Hundreds of emulated execs at once, of two arches: all succeed, each
//! with its own output.

use std::fs;

use qemu_shim_suite::{busybox, sandbox_caps, As, Scratch};

use super::{helper, tagged_outcomes, Outcome};

#[test]
fn hundreds_of_emulated_execs_at_once_all_succeed() {
    let s = Scratch::new("many");
    let helper = helper(&s);
    busybox("arm64");
    busybox("armhf");
    sandbox_caps(
        As::Root,
        &s,
        &format!(
            r#"
install_shim aarch64 arm >/dev/null
mkdir "$S/out"
# Two arches at once, 160 copies each, every one started before any is
# waited for: each prints its own number.
{h} many 160 "$S/out/arm64" "$FIX/busybox/arm64/busybox" echo arm64- >"$S/arm64.report" &
{h} many 160 "$S/out/armhf" "$FIX/busybox/armhf/busybox" echo armhf- >"$S/armhf.report" &
wait
"#,
            h = helper.display()
        ),
    );
    let mut ok = 0;
    for deb in ["arm64", "armhf"] {
        let outcomes = tagged_outcomes(&s.join(&format!("{deb}.report")));
        assert_eq!(outcomes.len(), 160, "{deb}: not every copy reported");
        for (i, outcome) in outcomes {
            let read = |ext: &str| {
                fs::read_to_string(s.join(&format!("out/{deb}.{i}.{ext}"))).unwrap_or_default()
            };
            let (out, err) = (read("out"), read("err"));
            assert!(
                outcome == Outcome::Exit(0) && out == format!("{deb}-{i}\n") && err.is_empty(),
                "{deb} copy {i}: {outcome:?}\n--- stdout\n{out}--- stderr\n{err}"
            );
            ok += 1;
        }
    }
    eprintln!("{ok} emulated execs at once, all with the right output");
}
