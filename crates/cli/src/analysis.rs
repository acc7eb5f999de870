//! Which arch a binfmt_misc entry is for, and which entry wins each arch.
//!
//! An entry's magic and mask are compared with each arch row's as sets of
//! files: an entry *overlaps* a row when some file of that arch matches it,
//! and *covers* a row when every file of that arch does. Both are decided
//! exactly, byte by byte, from the kernel's rule `(byte ^ magic) & mask == 0`:
//!
//! - overlap: wherever both constrain a bit, they agree on it;
//! - cover: the entry constrains only bits the row fixes, and agrees on them.
//!
//! An entry is *for* an arch when it overlaps exactly that one row (an entry
//! matching several arches, say any ELF file, is for none). For each arch,
//! the kernel runs the first enabled entry, newest first, that matches the
//! file; so the *winner* of an arch is the first enabled entry that overlaps
//! its row, and it wins only part of the arch's files unless it covers it.

use qemu_shim_registry::arch::{Arch, ARCHES};

/// The magic part of an entry, as the kernel compares it.
#[derive(Debug, Clone, Copy)]
pub struct Pattern<'a> {
    pub offset: usize,
    pub magic: &'a [u8],
    /// `None`: every bit counts.
    pub mask: Option<&'a [u8]>,
}

/// How an entry relates to the files of one arch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// No file of the arch matches the entry.
    Disjoint,
    /// Some files of the arch match the entry, others may not.
    Overlaps,
    /// Every file of the arch matches the entry.
    Covers,
}

impl Pattern<'_> {
    fn mask_at(&self, i: usize) -> u8 {
        self.mask.and_then(|m| m.get(i).copied()).unwrap_or(0xff)
    }

    /// How this pattern relates to `row`'s files.
    pub fn relation(&self, row: &Arch) -> Relation {
        let mut covers = true;
        for (i, &m) in self.magic.iter().enumerate() {
            let em = self.mask_at(i);
            if em == 0 {
                continue;
            }
            let row_byte = (self.offset + i)
                .checked_sub(row.offset)
                .and_then(|j| Some((*row.magic.get(j)?, *row.mask.get(j)?)));
            match row_byte {
                Some((rm, rk)) => {
                    if (m ^ rm) & em & rk != 0 {
                        return Relation::Disjoint;
                    }
                    // Bits the entry checks but the row leaves free: some
                    // files of the arch have them either way.
                    if em & !rk != 0 {
                        covers = false;
                    }
                }
                // A byte the row does not look at: files of the arch can
                // hold any value there.
                None => covers = false,
            }
        }
        if covers {
            Relation::Covers
        } else {
            Relation::Overlaps
        }
    }

    /// The one arch this pattern overlaps, if exactly one.
    pub fn arch(&self) -> Option<&'static Arch> {
        let mut found = None;
        for row in ARCHES {
            if self.relation(row) != Relation::Disjoint {
                if found.is_some() {
                    return None;
                }
                found = Some(row);
            }
        }
        found
    }
}

/// What the analysis needs to know of one entry.
#[derive(Debug, Clone, Copy)]
pub struct EntryView<'a> {
    pub enabled: bool,
    /// `None` for extension entries, which never match by header.
    pub pattern: Option<Pattern<'a>>,
}

/// The winner of one arch.
#[derive(Debug, Clone)]
pub struct Winner {
    pub arch: &'static Arch,
    /// Index of the winning entry in the list.
    pub entry: usize,
    /// The winner matches only some of the arch's files.
    pub partial: bool,
    /// Indexes of the later enabled entries that also overlap the arch.
    pub shadowed: Vec<usize>,
}

/// For every arch that some enabled entry overlaps, its winner; `entries`
/// in the kernel's match order (newest first).
pub fn winners(entries: &[EntryView<'_>]) -> Vec<Winner> {
    let mut out = Vec::new();
    for row in ARCHES {
        let mut hits = entries.iter().enumerate().filter_map(|(i, e)| {
            let p = e.pattern.filter(|_| e.enabled)?;
            match p.relation(row) {
                Relation::Disjoint => None,
                r => Some((i, r)),
            }
        });
        if let Some((entry, rel)) = hits.next() {
            out.push(Winner {
                arch: row,
                entry,
                partial: rel != Relation::Covers,
                shadowed: hits.map(|(i, _)| i).collect(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use qemu_shim_registry::arch;

    fn aarch64() -> &'static Arch {
        arch::by_name("aarch64").unwrap()
    }

    fn row_pattern(a: &'static Arch) -> Pattern<'static> {
        Pattern {
            offset: a.offset,
            magic: a.magic,
            mask: Some(a.mask),
        }
    }

    #[test]
    fn a_row_covers_itself_and_is_its_arch() {
        for a in ARCHES {
            assert_eq!(row_pattern(a).relation(a), Relation::Covers, "{}", a.name);
            assert!(
                std::ptr::eq(row_pattern(a).arch().unwrap(), a),
                "{}",
                a.name
            );
        }
    }

    #[test]
    fn any_elf_entry_covers_every_row_and_is_for_no_single_arch() {
        let p = Pattern {
            offset: 0,
            magic: b"\x7fELF",
            mask: None,
        };
        assert_eq!(p.relation(aarch64()), Relation::Covers);
        if ARCHES.len() > 1 {
            assert!(p.arch().is_none());
        }
    }

    #[test]
    fn narrower_entry_overlaps_but_does_not_cover() {
        // Also requires EI_OSABI (byte 7) = 3 (Linux), which the row ignores.
        let a = aarch64();
        let mut mask = a.mask.to_vec();
        let mut magic = a.magic.to_vec();
        mask[7] = 0xff;
        magic[7] = 3;
        let p = Pattern {
            offset: 0,
            magic: &magic,
            mask: Some(&mask),
        };
        assert_eq!(p.relation(a), Relation::Overlaps);
        assert!(std::ptr::eq(p.arch().unwrap(), a));
    }

    #[test]
    fn entry_checking_bytes_beyond_the_row_overlaps() {
        let a = aarch64();
        let p = Pattern {
            offset: 0,
            magic: &[a.magic, b"\x01\x00\x00\x00"].concat(),
            mask: None,
        };
        // No mask: every bit of the row's masked-out bytes counts too.
        assert_ne!(p.relation(a), Relation::Covers);
    }

    #[test]
    fn other_machine_is_disjoint() {
        let a = aarch64();
        let mut magic = a.magic.to_vec();
        magic[18] = 0x3e; // EM_X86_64
        let p = Pattern {
            offset: 0,
            magic: &magic,
            mask: Some(a.mask),
        };
        assert_eq!(p.relation(a), Relation::Disjoint);
        // An unmasked bit may differ freely.
        let mut magic = a.magic.to_vec();
        magic[7] = 0x55;
        let p = Pattern {
            offset: 0,
            magic: &magic,
            mask: Some(a.mask),
        };
        assert_eq!(p.relation(a), Relation::Covers);
    }

    #[test]
    fn first_enabled_overlapping_entry_wins_and_later_ones_are_shadowed() {
        let a = aarch64();
        let row = row_pattern(a);
        let x86 = Pattern {
            offset: 0,
            magic: b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00",
            mask: None,
        };
        let entries = [
            EntryView {
                enabled: false,
                pattern: Some(row),
            },
            EntryView {
                enabled: true,
                pattern: None,
            },
            EntryView {
                enabled: true,
                pattern: Some(x86),
            },
            EntryView {
                enabled: true,
                pattern: Some(row),
            },
            EntryView {
                enabled: true,
                pattern: Some(row),
            },
        ];
        let w = winners(&entries);
        let w = w.iter().find(|w| std::ptr::eq(w.arch, a)).unwrap();
        assert_eq!(w.entry, 3);
        assert!(!w.partial);
        assert_eq!(w.shadowed, vec![4]);
    }

    #[test]
    fn no_enabled_entry_no_winner() {
        let entries = [EntryView {
            enabled: false,
            pattern: Some(row_pattern(aarch64())),
        }];
        assert!(winners(&entries).is_empty());
    }
}
