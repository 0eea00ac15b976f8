//! Names for the numbers the kernel reports: drop and reset reasons (their values
//! differ between kernels, so they are read from the running kernel's BTF). The kernel
//! function a drop happened in is named by the program itself (`places` in
//! `bpf/witness.bpf.c`).

use std::collections::HashMap;
use std::sync::OnceLock;

/// Everything that turns the witness's numbers into words, shared by the stages that
/// name what the kernel did.
#[derive(Debug, Default)]
pub struct Names {
    /// Read on first use: parsing the kernel's BTF (megabytes) for them was a tenth of
    /// the witness's start-up CPU (perf, idle run), and a run that sees no
    /// drop or reset never names one. The file is world-readable, so a run that dropped
    /// its privileges (`-Z`) still reads it.
    reasons: OnceLock<Reasons>,
}

impl Names {
    /// The running kernel's names, read when first needed.
    #[cfg(feature = "kernel-witness")]
    pub fn of_kernel() -> Names {
        Names::default()
    }

    /// Built by hand in tests.
    #[cfg(test)]
    pub fn with(reasons: Reasons) -> Names {
        Names {
            reasons: OnceLock::from(reasons),
        }
    }

    /// The reasons' names (read from the kernel the first time).
    pub fn reasons(&self) -> &Reasons {
        self.reasons.get_or_init(Reasons::of_running_kernel)
    }
}

/// `enum skb_drop_reason` and `enum sk_rst_reason` of the running kernel, by value.
#[derive(Clone, Debug, Default)]
pub struct Reasons {
    drop: HashMap<u32, &'static str>,
    reset: HashMap<u32, &'static str>,
}

/// A name the kernel gave: borrowed for the run's lifetime when the kernel knew it (no
/// allocation per connection that uses it), owned for a number it did not name.
pub type Name = std::borrow::Cow<'static, str>;

/// Leaked on purpose: the names of one kernel's two enums (a few hundred, read once per
/// run), kept for the run.
fn leak(name: &str) -> &'static str {
    Box::leak(name.to_string().into_boxed_str())
}

impl Reasons {
    /// From the running kernel's BTF; empty (numbers shown as such) where it cannot be
    /// read, or in a build without the witness (which has no numbers to name).
    fn of_running_kernel() -> Reasons {
        #[cfg(feature = "kernel-witness")]
        return Reasons::from_kernel();
        #[cfg(not(feature = "kernel-witness"))]
        Reasons::default()
    }

    #[cfg(feature = "kernel-witness")]
    fn from_kernel() -> Reasons {
        use super::core_btf::{enum_values, KernelBtf};
        let Some(btf) = KernelBtf::open() else {
            return Reasons::default();
        };
        let table = |name: &str, prefix: &str| -> HashMap<u32, &'static str> {
            enum_values(btf.bytes(), name)
                .unwrap_or_default()
                .into_iter()
                .map(|(v, n)| (v, leak(n.strip_prefix(prefix).unwrap_or(n))))
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
            drop: drop.iter().map(|&(v, n)| (v, leak(n))).collect(),
            reset: reset.iter().map(|&(v, n)| (v, leak(n))).collect(),
        }
    }

    /// `NETFILTER_DROP`, or the number when this kernel's BTF did not say.
    pub fn drop_name(&self, value: u32) -> Name {
        match self.drop.get(&value) {
            Some(n) => Name::Borrowed(n),
            None => Name::Owned(format!("DROP_REASON_{value}")),
        }
    }

    /// `NETFILTER_DROP`, when this kernel's BTF said: [`drop_name`](Self::drop_name)
    /// without the allocation, for a test made once a drop.
    pub fn drop_known(&self, value: u32) -> Option<&str> {
        self.drop.get(&value).copied()
    }

    /// `NO_SOCKET`, `TCP_ABORT_ON_CLOSE`, …; `None` for a kernel that gives no reason.
    pub fn reset_name(&self, value: Option<u32>) -> Option<Name> {
        let value = value?;
        Some(match self.reset.get(&value) {
            Some(n) => Name::Borrowed(n),
            None => Name::Owned(format!("RESET_REASON_{value}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_unknown_to_this_kernel_show_their_number() {
        let r = Reasons::with(&[(6, "NETFILTER_DROP")], &[(1, "NO_SOCKET")]);
        assert_eq!(r.drop_name(6), "NETFILTER_DROP");
        assert_eq!(r.drop_name(999), "DROP_REASON_999");
        assert_eq!(r.reset_name(Some(1)).as_deref(), Some("NO_SOCKET"));
        assert_eq!(r.reset_name(None), None);
    }
}
