//! The probe types, one file each, and the one registry that lists them.
//!
//! A type's file holds everything about it: its settings, how they are read from a file or
//! labels and checked ([`Kind::resolve`]), the keys it accepts ([`Kind::KEYS`]), how its target
//! reads in tables, the secrets it carries, how it runs, and its unit tests.
//!
//! Adding a type (say `redis`) is one new file, `kinds/redis.rs`, whose settings implement
//! [`Kind`], and one line in the registry below, `Redis(redis::RedisSettings),`: that line
//! declares the module and adds the type to [`ProbeKind`], to the key table (so the file and
//! labels accept its keys), to the resolver and to the dispatch of [`super::run`]. Dispatch is a
//! `match` on [`ProbeKind`] rather than a trait object: the set of types is closed, each type's
//! settings are typed, and the compiler checks that every type is handled.

use std::future::Future;
use std::sync::LazyLock;

use super::common::COMMON_KEYS;
use super::raw::{Key, Shape};
use super::resolve::{Res, Resolver};
use super::{Failure, ProbeContext, Recorder};

/// What a probe type provides: implemented by its settings.
pub(crate) trait Kind: Sized {
    /// The `type` value users write.
    const TYPE: &'static str;
    /// The keys it accepts beyond the shared ones ([`COMMON_KEYS`]), with their shapes.
    const KEYS: &'static [Key];
    /// True for types that inform and alert but never restart.
    const INFORMATIONAL: bool = false;

    /// Reads and checks the type's keys; the shared keys are already read.
    fn resolve(r: &Resolver) -> Res<Self>;

    /// A short human description of the target, secrets masked (for tables and logs).
    fn target(&self) -> String;

    /// Every secret value these settings hold, as it might appear in an error text, so results
    /// can be scrubbed of them.
    fn secret_values(&self) -> Vec<String> {
        Vec::new()
    }

    /// One run, its steps recorded in `rec`; the timeout is applied around it.
    fn run(
        &self,
        ctx: &ProbeContext,
        rec: &Recorder,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// Declares each type's module, [`ProbeKind`] and everything that lists the types, from one
/// line per type: `Variant(module::Settings)`.
macro_rules! kinds {
    ($($(#[$doc:meta])* $variant:ident($module:ident::$name:ident),)*) => {
        $(pub mod $module;)*
        kinds!(@list $($(#[$doc])* $variant($module::$name),)*);
    };
    (@list $($(#[$doc:meta])* $variant:ident($settings:ty),)*) => {
        /// The probe types of SPEC "Probes", each with its settings.
        #[derive(Debug, Clone, PartialEq)]
        pub enum ProbeKind {
            $($(#[$doc])* $variant($settings),)*
        }

        /// The probe types and the keys each accepts beyond [`COMMON_KEYS`], in registry order.
        pub(crate) const TYPE_KEYS: &[(&str, &[Key])] =
            &[$((<$settings as Kind>::TYPE, <$settings as Kind>::KEYS),)*];

        /// True for a type that informs and never restarts.
        pub(crate) fn is_informational(type_name: &str) -> bool {
            $(type_name == <$settings as Kind>::TYPE && <$settings as Kind>::INFORMATIONAL ||)*
                false
        }

        impl ProbeKind {
            /// The `type` value of this kind.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(ProbeKind::$variant(_) => <$settings as Kind>::TYPE,)*
                }
            }

            /// True for types that inform and never restart.
            pub fn is_informational(&self) -> bool {
                match self {
                    $(ProbeKind::$variant(_) => <$settings as Kind>::INFORMATIONAL,)*
                }
            }

            /// A short human description of the target, secrets masked (for tables and logs).
            pub fn target(&self) -> String {
                match self {
                    $(ProbeKind::$variant(s) => s.target(),)*
                }
            }

            /// Every secret value these settings hold, as it might appear in an error text, so
            /// results can be scrubbed of them.
            pub fn secret_values(&self) -> Vec<String> {
                match self {
                    $(ProbeKind::$variant(s) => s.secret_values(),)*
                }
            }

            /// Resolves the settings of type `type_name`, one of [`TYPE_KEYS`].
            pub(crate) fn resolve(type_name: &str, r: &Resolver) -> Res<ProbeKind> {
                $(if type_name == <$settings as Kind>::TYPE {
                    return Ok(ProbeKind::$variant(<$settings as Kind>::resolve(r)?));
                })*
                unreachable!("type {type_name} is in TYPE_KEYS but has no resolver")
            }

            /// Runs the probe once.
            pub(crate) async fn run(
                &self,
                ctx: &ProbeContext,
                rec: &Recorder,
            ) -> Result<(), Failure> {
                match self {
                    $(ProbeKind::$variant(s) => s.run(ctx, rec).await,)*
                }
            }
        }
    };
}

// The registry: one line adds a type.
kinds! {
    /// An HTTP request with expectations.
    Http(http::HttpSettings),
    /// A TCP connection opens.
    Tcp(tcp::TcpSettings),
    /// Insert, read back and delete a document.
    Mongodb(mongodb::MongodbSettings),
    /// Queues exist, are drained and consumed.
    Rabbitmq(rabbitmq::RabbitmqSettings),
    /// A real model call answers OK.
    Ai(ai::AiSettings),
    /// The app's whole upload pipeline.
    Upload(upload::UploadSettings),
    /// A command inside a container exits 0.
    Exec(exec::ExecSettings),
    /// Informational: a mounted repository's branch, commit, changes and remote.
    Git(git::GitSettings),
    /// Informational: free space of a path.
    Disk(disk::DiskSettings),
    /// Informational: available memory.
    Memory(memory::MemorySettings),
}

/// The type names, for messages: `http, tcp, …`.
pub(crate) fn type_names() -> String {
    TYPE_KEYS
        .iter()
        .map(|(t, _)| *t)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every key of every type, each once: the shared keys, then each type's in registry order.
static ALL_KEYS: LazyLock<Vec<Key>> = LazyLock::new(|| {
    let mut all: Vec<Key> = COMMON_KEYS.to_vec();
    for (_, keys) in TYPE_KEYS {
        for key in keys.iter() {
            if !all.iter().any(|(k, _)| *k == key.0) {
                all.push(*key);
            }
        }
    }
    all
});

/// The names of [`ALL_KEYS`].
static ALL_KEY_NAMES: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| ALL_KEYS.iter().map(|(k, _)| *k).collect());

/// Every key any type accepts, as written in files and labels.
pub(crate) fn all_keys() -> &'static [&'static str] {
    &ALL_KEY_NAMES
}

/// A known key and the shape of its value.
pub(crate) fn key(name: &str) -> Option<Key> {
    ALL_KEYS.iter().find(|(k, _)| *k == name).copied()
}

/// Resolves one probe `p` from the keys of a YAML file (one `key: value` per line), with an
/// environment that holds no variable: for the kinds' own tests.
#[cfg(test)]
pub(crate) fn from_yaml(keys: &str) -> Result<super::ProbeSpec, super::ProbeConfigError> {
    let indented: String = keys.lines().map(|l| format!("    {l}\n")).collect();
    let text = format!("probes:\n  p:\n{indented}");
    super::parse::parse_yaml(&text, "m.yaml", &|_| None).map(|mut specs| specs.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_keys_are_all_raw_keys() {
        for (_, keys) in TYPE_KEYS {
            for key in keys.iter().chain(COMMON_KEYS).map(|(k, _)| k) {
                assert!(all_keys().contains(key), "{key}");
            }
        }
        assert!(all_keys().contains(&"type"));
    }

    /// One raw record holds every key, so a key two types share must be written alike in both.
    #[test]
    fn a_key_shared_by_two_types_has_one_shape() {
        for (type_name, keys) in TYPE_KEYS {
            for (name, shape) in keys.iter().chain(COMMON_KEYS) {
                assert_eq!(key(name), Some((*name, *shape)), "{type_name}.{name}");
            }
        }
    }

    #[test]
    fn the_registry_knows_each_type_once() {
        let mut names: Vec<&str> = TYPE_KEYS.iter().map(|(t, _)| *t).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), TYPE_KEYS.len());
        assert!(is_informational("disk") && !is_informational("http"));
        assert_eq!(Shape::Scalar, key("url").unwrap().1);
    }
}
