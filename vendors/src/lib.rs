//! Everything that differs per vendor, one folder each: its settings, its webhook
//! verifier and handshake (feature `edge`), its normalizers and what to fetch for a
//! notification (feature `processor`). Nothing outside this crate names a vendor;
//! the mechanisms vendors share (HMAC schemes, timestamp windows, JSON helpers, units)
//! live here too, vendor-free.
//!
//! The edge and the processor each compile only their side: the edge has no JSON
//! models or HTTP clients, the processor no HMAC code. One crate rather than two keeps
//! a vendor's two halves in one folder, where a reviewer sees them together (Oura's
//! client secret both verifies webhooks and refreshes tokens).
//!
//! Adding a vendor: a folder `src/<vendor>/`, a variant of [`Vendor`] and one line in
//! the registry below (see the README, "Adding a vendor").

pub use bridge_core::Vendor;

#[cfg(feature = "processor")]
pub mod fetch;
#[cfg(feature = "processor")]
pub mod normalize;
#[cfg(feature = "edge")]
pub mod verify;

/// The registry: one line per vendor, `module => Vendor variant`. It generates each
/// binary's vendor settings (every vendor's `clap` arguments, flattened) and the
/// lookups from a [`Vendor`] to its implementation.
macro_rules! registry {
    ($($module:ident => $vendor:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// Every vendor's edge settings.
        #[cfg(feature = "edge")]
        #[derive(Debug, Clone, clap::Args)]
        #[group(skip)]
        pub struct EdgeArgs {
            $(
                #[doc = concat!("`", stringify!($module), "` settings.")]
                #[command(flatten)]
                pub $module: $module::EdgeArgs,
            )*
        }

        #[cfg(feature = "edge")]
        impl EdgeArgs {
            /// The verifier of every vendor that is configured; `tolerance` is the
            /// default timestamp window. Errors name the variable at fault.
            pub fn verifiers(
                &self,
                tolerance: std::time::Duration,
            ) -> Result<
                Vec<(Vendor, std::sync::Arc<dyn verify::Verifier>)>,
                bridge_core::config::ConfigError,
            > {
                let mut out = Vec::new();
                $(
                    if let Some(v) = self.$module.verifier(tolerance)? {
                        out.push((Vendor::$vendor, v));
                    }
                )*
                Ok(out)
            }
        }

        /// Every vendor's processor settings.
        #[cfg(feature = "processor")]
        #[derive(Debug, Clone, clap::Args)]
        #[group(skip)]
        pub struct ProcessorArgs {
            $(
                #[doc = concat!("`", stringify!($module), "` settings.")]
                #[command(flatten)]
                pub $module: $module::ProcessorArgs,
            )*
        }

        #[cfg(feature = "processor")]
        impl ProcessorArgs {
            /// What the fetch engine needs from every vendor whose webhooks are
            /// notifications to fetch.
            pub fn fetched(&self) -> Vec<(Vendor, fetch::FetchSpec)> {
                let mut out = Vec::new();
                $(
                    if let Some(spec) = self.$module.fetch() {
                        out.push((Vendor::$vendor, spec));
                    }
                )*
                out
            }
        }

        /// The normalizer the pipeline calls for a raw envelope of `vendor`.
        #[cfg(feature = "processor")]
        pub(crate) fn push_normalizer(
            vendor: Vendor,
        ) -> fn(
            &bridge_core::RawEnvelope,
        ) -> Result<bridge_core::model::Normalized, normalize::NormalizeError> {
            match vendor {
                $(Vendor::$vendor => $module::normalize,)*
            }
        }

        #[cfg(test)]
        #[test]
        fn registry_lists_every_vendor_once() {
            let listed = [$(Vendor::$vendor),*];
            assert_eq!(listed.len(), Vendor::ALL.len());
            for v in Vendor::ALL {
                assert_eq!(listed.iter().filter(|l| **l == v).count(), 1, "{v}");
            }
        }
    };
}

/// Settings of a vendor that has none on this side.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct NoSettings {}

impl NoSettings {
    /// Nothing to fetch.
    #[cfg(feature = "processor")]
    pub fn fetch(&self) -> Option<fetch::FetchSpec> {
        None
    }
}

registry! {
    oura => Oura,
    whoop => Whoop,
    terra => Terra,
    polar => Polar,
    healthkit => HealthKit,
    suunto => Suunto,
}
