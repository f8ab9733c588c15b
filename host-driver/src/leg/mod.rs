//! Leg kinds: how a router's LAN leg (and the host's shim, and doctor's probe
//! leg) is made on the parent NIC. Each kind is one file implementing
//! [`LegKind`]; [`KINDS`] lists them, and a [`Kind`] is a handle to one of
//! them that the command line, the labels and the configuration file parse
//! by name. Nothing outside this folder asks which kind it holds: it asks
//! the kind.
//!
//! A new kind (a VLAN sub-interface, say) is a file here with a unit struct
//! implementing [`LegKind`], and one line in [`KINDS`].

mod ipvlan;
mod kind;
mod macvlan;

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::OnceLock;

use rtnetlink::packet_route::link::InfoKind;

pub use kind::{LegKind, LegOption, LinkSpec};

/// One of the [`KINDS`]. Compared, ordered and printed by name.
#[derive(Clone, Copy)]
pub struct Kind(&'static dyn LegKind);

/// macvlan, the default kind.
pub const MACVLAN: Kind = Kind(&macvlan::Macvlan);
/// ipvlan, for parents that drop unknown MACs.
pub const IPVLAN: Kind = Kind(&ipvlan::Ipvlan);

/// Every kind, the default first (the order of `--help` and of doctor's
/// kernel checks).
pub static KINDS: &[Kind] = &[MACVLAN, IPVLAN];

impl Kind {
    pub fn by_name(name: &str) -> Option<Kind> {
        KINDS.iter().copied().find(|k| k.name() == name)
    }

    /// The kind of an existing link, from its `IFLA_INFO_KIND`.
    pub fn of_link(info: &InfoKind) -> Option<Kind> {
        KINDS.iter().copied().find(|k| k.info_kind() == *info)
    }
}

/// Every kind's name, in [`KINDS`]' order.
fn names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| KINDS.iter().map(|k| k.name()).collect())
}

/// "a, b or c".
fn one_of(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

impl std::ops::Deref for Kind {
    type Target = dyn LegKind;
    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl Default for Kind {
    fn default() -> Self {
        KINDS[0]
    }
}

impl PartialEq for Kind {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Kind {}

impl PartialOrd for Kind {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Kind {
    fn cmp(&self, other: &Self) -> Ordering {
        self.name().cmp(other.name())
    }
}

impl Hash for Kind {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The label `netcontainer.mode` (its error is completed with the label's name).
impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Kind::by_name(s).ok_or_else(|| format!("unknown mode {s:?} (expected {})", one_of(names())))
    }
}

/// `--mode`.
impl clap::ValueEnum for Kind {
    fn value_variants<'a>() -> &'a [Self] {
        KINDS
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// The configuration key `mode`: read as a unit enum variant, as a derived
/// enum is, so the file's errors read as for any other key (serde's own
/// "unknown variant `x`, expected ...").
impl<'de> serde::Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{EnumAccess, Error, VariantAccess};
        struct Name;
        impl<'de> serde::de::Visitor<'de> for Name {
            type Value = Kind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a leg kind ({})", one_of(names()))
            }
            fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Kind, A::Error> {
                let (name, variant) = data.variant::<String>()?;
                let kind = Kind::by_name(&name)
                    .ok_or_else(|| A::Error::unknown_variant(&name, names()))?;
                variant.unit_variant()?;
                Ok(kind)
            }
        }
        d.deserialize_enum("Kind", names(), Name)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rtnetlink::packet_route::link::{
        InfoData, InfoIpVlan, InfoMacVlan, IpVlanMode, LinkAttribute, LinkInfo, LinkMessage,
        MacVlanMode,
    };

    use super::*;

    fn spec(mac: Option<[u8; 6]>, netns: Option<i32>) -> LinkSpec<'static> {
        LinkSpec {
            name: "lan0",
            parent_index: 7,
            mac,
            netns,
        }
    }

    fn infos(m: &LinkMessage) -> Vec<LinkInfo> {
        m.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(i) => Some(i.clone()),
                _ => None,
            })
            .expect("a link kind")
    }

    fn has(m: &LinkMessage, want: &LinkAttribute) -> bool {
        m.attributes.iter().any(|a| a == want)
    }

    #[test]
    fn kinds_have_distinct_names_and_the_first_is_the_default() {
        let mut seen = BTreeSet::new();
        for k in KINDS {
            assert!(seen.insert(k.name()), "{k} twice");
            assert_eq!(Kind::by_name(k.name()), Some(*k));
            assert_eq!(Kind::of_link(&k.info_kind()), Some(*k));
            assert_eq!(k.name().parse::<Kind>(), Ok(*k));
        }
        assert_eq!(Kind::default(), MACVLAN);
        assert_eq!(Kind::of_link(&InfoKind::Veth), None);
        let e = "bridge".parse::<Kind>().unwrap_err();
        assert_eq!(e, "unknown mode \"bridge\" (expected macvlan or ipvlan)");
        assert_eq!(one_of(&["a", "b", "c"]), "a, b or c");
        assert_eq!(one_of(&["a"]), "a");
    }

    #[test]
    fn a_macvlan_leg_has_its_own_mac_and_lands_in_the_namespace() {
        let m = MACVLAN.link(&spec(Some([2, 0, 0, 0, 0, 1]), Some(9)));
        assert!(has(&m, &LinkAttribute::IfName("lan0".into())));
        assert!(has(&m, &LinkAttribute::Link(7)));
        assert!(has(&m, &LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1])));
        assert!(has(&m, &LinkAttribute::NetNsFd(9)));
        assert_eq!(
            infos(&m),
            [
                LinkInfo::Kind(InfoKind::MacVlan),
                LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                    MacVlanMode::Bridge
                )])),
            ]
        );
        // A shim: no MAC of ours, in the caller's namespace.
        let shim = MACVLAN.link(&spec(None, None));
        assert!(
            !shim
                .attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::Address(_) | LinkAttribute::NetNsFd(_)))
        );
        assert!(MACVLAN.own_mac() && !MACVLAN.broadcast_flag());
        assert!(LegOption::ALL.iter().all(|o| MACVLAN.refuses(*o).is_none()));
    }

    #[test]
    fn an_ipvlan_leg_has_the_parents_mac_and_asks_for_broadcast_replies() {
        let m = IPVLAN.link(&spec(Some([2, 0, 0, 0, 0, 1]), Some(9)));
        assert!(has(&m, &LinkAttribute::Link(7)));
        assert!(has(&m, &LinkAttribute::NetNsFd(9)));
        assert!(
            !m.attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::Address(_))),
            "the parent's MAC, never one of ours"
        );
        assert_eq!(
            infos(&m),
            [
                LinkInfo::Kind(InfoKind::IpVlan),
                LinkInfo::Data(InfoData::IpVlan(vec![InfoIpVlan::Mode(IpVlanMode::L2)])),
            ]
        );
        assert!(!IPVLAN.own_mac(), "ipvlan legs share the parent's MAC");
        assert!(IPVLAN.broadcast_flag(), "RFC 2131 4.1");
        for o in LegOption::ALL {
            let why = IPVLAN.refuses(o).expect("refused");
            assert!(
                why.contains("parent's") && why.contains("--mode macvlan"),
                "{why}"
            );
        }
    }

    #[test]
    fn the_config_file_and_the_command_line_name_kinds() {
        #[derive(serde::Deserialize, Debug)]
        struct File {
            mode: Kind,
        }
        let f: File = toml::from_str("mode = \"ipvlan\"").unwrap();
        assert_eq!(f.mode, IPVLAN);
        let e = toml::from_str::<File>("mode = \"bridge\"").unwrap_err();
        assert!(
            e.message()
                .starts_with("unknown variant `bridge`, expected `macvlan` or `ipvlan`"),
            "{e}"
        );
        #[derive(clap::Parser)]
        struct Cli {
            #[arg(long, value_enum)]
            mode: Option<Kind>,
        }
        let c = <Cli as clap::Parser>::try_parse_from(["x", "--mode", "ipvlan"]).unwrap();
        assert_eq!(c.mode, Some(IPVLAN));
        let e = <Cli as clap::Parser>::try_parse_from(["x", "--mode", "bridge"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("[possible values: macvlan, ipvlan]"), "{e}");
    }
}
