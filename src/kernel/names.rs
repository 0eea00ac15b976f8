//! Names for the numbers the kernel reports: drop and reset reasons (their values
//! differ between kernels, so they are read from the running kernel's BTF) and the
//! kernel function a drop happened in (from /proc/kallsyms).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};

/// Everything that turns the witness's numbers into words, shared by the stages that
/// name what the kernel did.
#[derive(Debug, Default)]
pub struct Names {
    pub reasons: Reasons,
    symbols: Symbols,
}

impl Names {
    /// The running kernel's names. Call while still privileged: the kernel shows
    /// kallsyms' addresses only to a privileged reader. Reading it takes 0.1–0.2 s (the
    /// kernel formats 120,000 lines), paid here at start rather than by the first drop
    /// to name, which would hold up that connection's line.
    #[cfg(feature = "kernel-witness")]
    pub fn of_kernel() -> Names {
        Names {
            reasons: Reasons::from_kernel(),
            symbols: std::fs::File::open("/proc/kallsyms")
                .map(Symbols::read)
                .unwrap_or_default(),
        }
    }

    /// Built by hand in tests.
    #[cfg(test)]
    pub fn with(reasons: Reasons, symbols: Symbols) -> Names {
        Names { reasons, symbols }
    }

    /// The kernel function at `addr`, e.g. `nf_hook_slow`.
    pub fn function_at(&self, addr: u64) -> Option<&str> {
        self.symbols.function_at(addr)
    }
}

/// `enum skb_drop_reason` and `enum sk_rst_reason` of the running kernel, by value.
#[derive(Clone, Debug, Default)]
pub struct Reasons {
    drop: HashMap<u32, Box<str>>,
    reset: HashMap<u32, Box<str>>,
}

impl Reasons {
    /// From the running kernel's BTF; empty (numbers shown as such) where it cannot be
    /// read.
    #[cfg(feature = "kernel-witness")]
    pub fn from_kernel() -> Reasons {
        use libbpf_rs::btf::{types::Enum, Btf};
        let Ok(btf) = Btf::from_vmlinux() else {
            return Reasons::default();
        };
        let table = |name: &str, prefix: &str| -> HashMap<u32, Box<str>> {
            let Some(e) = btf.type_by_name::<Enum<'_>>(name) else {
                return HashMap::new();
            };
            e.iter()
                .filter_map(|m| {
                    let n = m.name?.to_str()?;
                    Some((m.value as u32, n.strip_prefix(prefix).unwrap_or(n).into()))
                })
                .collect()
        };
        Reasons {
            // SKB_DROP_REASON_NETFILTER_DROP → NETFILTER_DROP (SKB_CONSUMED keeps its
            // name: it is not a drop).
            drop: table("skb_drop_reason", "SKB_DROP_REASON_"),
            reset: table("sk_rst_reason", "SK_RST_REASON_"),
        }
    }

    /// Built by hand in tests.
    #[cfg(test)]
    pub fn with(drop: &[(u32, &str)], reset: &[(u32, &str)]) -> Reasons {
        Reasons {
            drop: drop.iter().map(|&(v, n)| (v, n.into())).collect(),
            reset: reset.iter().map(|&(v, n)| (v, n.into())).collect(),
        }
    }

    /// `NETFILTER_DROP`, or the number when this kernel's BTF did not say.
    pub fn drop_name(&self, value: u32) -> String {
        self.drop
            .get(&value)
            .map_or_else(|| format!("DROP_REASON_{value}"), |n| n.to_string())
    }

    /// `NETFILTER_DROP`, when this kernel's BTF said: [`drop_name`](Self::drop_name)
    /// without the allocation, for a test made once a drop.
    pub fn drop_known(&self, value: u32) -> Option<&str> {
        self.drop.get(&value).map(|n| &**n)
    }

    /// `NO_SOCKET`, `TCP_ABORT_ON_CLOSE`, …; `None` for a kernel that gives no reason.
    pub fn reset_name(&self, value: Option<u32>) -> Option<String> {
        let value = value?;
        Some(
            self.reset
                .get(&value)
                .map_or_else(|| format!("RESET_REASON_{value}"), |n| n.to_string()),
        )
    }
}

/// The kernel's text symbols, to name the function an address is in. Read from a
/// /proc/kallsyms opened while portsniff still had its privileges: the kernel decides at
/// open time whether the reader may see addresses.
#[derive(Debug, Default)]
pub struct Symbols {
    /// Sorted by address: the address, and where the name is in `names` (start, length).
    starts: Vec<(u64, u32, u16)>,
    names: String,
}

impl Symbols {
    /// Reads `nm`-style lines (`ffffffff81000000 T _stext [module]`), keeping text symbols.
    pub fn read(source: impl Read) -> Symbols {
        let mut s = Symbols::default();
        for line in BufReader::with_capacity(1 << 16, source).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split_ascii_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if !matches!(kind, "t" | "T") {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            // Unprivileged readers see every address as 0: nothing to name with.
            if addr == 0 {
                continue;
            }
            let (Ok(at), Ok(len)) = (u32::try_from(s.names.len()), u16::try_from(name.len()))
            else {
                break;
            };
            s.names.push_str(name);
            s.starts.push((addr, at, len));
        }
        s.starts.sort_unstable_by_key(|&(a, _, _)| a);
        s
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The function `addr` is in (the nearest symbol at or below it).
    pub fn function_at(&self, addr: u64) -> Option<&str> {
        let i = self
            .starts
            .partition_point(|&(a, _, _)| a <= addr)
            .checked_sub(1)?;
        let (_, at, len) = self.starts[i];
        self.names.get(at as usize..at as usize + usize::from(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
ffffffff81000000 T _stext
ffffffff81a00000 t nf_hook_slow
ffffffff81a00400 T nf_hook_slow_list
ffffffff81b00000 d some_data
ffffffffc0100000 t nft_do_chain	[nf_tables]
0000000000000000 T hidden
";

    #[test]
    fn an_address_is_named_by_the_function_it_falls_in() {
        let s = Symbols::read(KALLSYMS.as_bytes());
        assert_eq!(s.function_at(0xffff_ffff_81a0_0123), Some("nf_hook_slow"));
        assert_eq!(
            s.function_at(0xffff_ffff_81a0_0400),
            Some("nf_hook_slow_list")
        );
        assert_eq!(s.function_at(0xffff_ffff_c010_0042), Some("nft_do_chain"));
        assert_eq!(s.function_at(0x1000), None);
    }

    #[test]
    fn addresses_hidden_from_an_unprivileged_reader_name_nothing() {
        let s = Symbols::read("0000000000000000 T _stext\n".as_bytes());
        assert!(s.is_empty());
        assert_eq!(s.function_at(0xffff_ffff_8100_0000), None);
    }

    #[test]
    fn reasons_unknown_to_this_kernel_show_their_number() {
        let r = Reasons::with(&[(6, "NETFILTER_DROP")], &[(1, "NO_SOCKET")]);
        assert_eq!(r.drop_name(6), "NETFILTER_DROP");
        assert_eq!(r.drop_name(999), "DROP_REASON_999");
        assert_eq!(r.reset_name(Some(1)).as_deref(), Some("NO_SOCKET"));
        assert_eq!(r.reset_name(None), None);
    }
}
