//! Which eKuiper and Neuron a NeuronEX version bundles, and the behaviours that follow from them.
//!
//! Source: the table in docs/SIMULATOR.md ("Versions", with its sources). 3.5.5 and 3.7.0 are
//! confirmed; the other rows are inferred from release dates and features and are marked so in
//! the docs (docs/COMPATIBILITY.md holds the same table for users).

pub use domain::version::Version;

/// The engines one NeuronEX build bundles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Engines {
    pub neuronex: Version,
    pub ekuiper: Version,
    pub neuron: Version,
}

impl Engines {
    pub fn for_neuronex(neuronex: Version) -> Engines {
        let (ekuiper, neuron) = match (neuronex.major, neuronex.minor) {
            (major, _) if major < 3 => (Version::new(1, 10, 0), Version::new(2, 5, 0)),
            (3, 0) => (Version::new(1, 11, 0), Version::new(2, 6, 0)),
            (3, 1) => (Version::new(1, 12, 0), Version::new(2, 7, 0)),
            (3, 2) => (Version::new(1, 13, 0), Version::new(2, 8, 0)),
            (3, 3) => (Version::new(1, 14, 0), Version::new(2, 9, 0)),
            (3, 4) => (Version::new(2, 0, 0), Version::new(2, 10, 0)),
            (3, 5) => (Version::new(2, 1, 5), Version::new(2, 11, 5)),
            (3, 6) => (Version::new(2, 2, 0), Version::new(2, 12, 0)),
            (3, 7) => (Version::new(2, 3, 1), Version::new(2, 13, 0)),
            (3, 8) => (Version::new(2, 3, 1), Version::new(2, 14, 0)),
            _ => (Version::new(2, 4, 0), Version::new(2, 15, 0)),
        };
        Engines { neuronex, ekuiper, neuron }
    }

    pub fn ekuiper_v2(&self) -> bool {
        self.ekuiper.major >= 2
    }

    /// `PUT /rules/{id}` creates a missing rule only from eKuiper 2.2.0.
    pub fn rule_put_upserts(&self) -> bool {
        self.ekuiper >= Version::new(2, 2, 0)
    }

    /// eKuiper 2.4 checks ids against `^[a-zA-Z0-9_\-]+$`; 1.13 to 2.3 reject `/`, `#`, `%` and
    /// surrounding whitespace; older ones check nothing.
    pub fn rule_id_check(&self) -> RuleIdCheck {
        if self.ekuiper >= Version::new(2, 4, 0) {
            RuleIdCheck::Strict
        } else if self.ekuiper >= Version::new(1, 13, 0) {
            RuleIdCheck::InvalidChars
        } else {
            RuleIdCheck::None
        }
    }

    /// Code of errors raised while planning a rule (missing stream, unknown sink).
    pub fn plan_error_code(&self) -> u32 {
        if self.ekuiper_v2() { 1000 } else { 4000 }
    }

    /// Neuron answers bad tags with 206 up to 2.6 and with 400 from 2.7 on.
    pub fn tag_error_status(&self) -> u16 {
        if self.neuron >= Version::new(2, 7, 0) { 400 } else { 206 }
    }

    /// `/api/v2/global/drivers` exists from Neuron 2.8.0 (NeuronEX 3.2).
    pub fn has_global_drivers(&self) -> bool {
        self.neuron >= Version::new(2, 8, 0)
    }

    /// `PUT /streams/{name}` refuses a `VERSION` that is not greater than the stored one and a
    /// changed `SHARED` from eKuiper 2.3 (lf-edge/ekuiper `internal/processor/stream.go`
    /// `ExecReplaceStream`, absent in v2.2.0, present in v2.3.1).
    pub fn stream_replace_checks(&self) -> bool {
        self.ekuiper >= Version::new(2, 3, 0)
    }

    /// A rule's sinks may carry `"enable": false` from NeuronEX 3.9.2 (its release notes); before,
    /// the field is ignored and the sink runs.
    pub fn sink_enable(&self) -> bool {
        self.neuronex >= Version::new(3, 9, 2)
    }

    /// eKuiper 2.4 refuses to download from loopback, private and link-local addresses unless
    /// `basic.enablePrivateNet` is set (lf-edge/ekuiper `internal/pkg/httpx/http.go`).
    pub fn download_guard(&self) -> bool {
        self.ekuiper >= Version::new(2, 4, 0)
    }

    /// NeuronEX 3.7.1 generates its login key pair at every start, so a restart invalidates every
    /// login token (3.7.1 release notes); older releases keep a built-in key.
    pub fn login_key_per_start(&self) -> bool {
        self.neuronex >= Version::new(3, 7, 1)
    }

    /// Longest tag description: 127 bytes up to Neuron 2.14, 255 from 2.15
    /// (`NEU_TAG_DESCRIPTION_LEN` minus the NUL; NeuronEX 3.9 release notes).
    pub fn tag_description_max(&self) -> usize {
        if self.neuron >= Version::new(2, 15, 0) { 255 } else { 127 }
    }

    /// Tags carry a `unit` from Neuron 2.15 (`neu_json_encode_tag`; NeuronEX 3.9).
    pub fn tag_units(&self) -> bool {
        self.neuron >= Version::new(2, 15, 0)
    }

    /// What `ruleset/import` does with items that already exist.
    pub fn ruleset_overwrites(&self) -> (bool, bool) {
        let rules = self.ekuiper >= Version::new(2, 2, 0);
        let streams = self.ekuiper >= Version::new(2, 3, 0);
        (streams, rules)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleIdCheck {
    None,
    InvalidChars,
    Strict,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmed_bundles_match_the_reference() {
        let e = Engines::for_neuronex(Version::new(3, 5, 5));
        assert_eq!(e.ekuiper, Version::new(2, 1, 5));
        assert_eq!(e.neuron, Version::new(2, 11, 5));
        let e = Engines::for_neuronex(Version::new(3, 7, 0));
        assert_eq!(e.ekuiper, Version::new(2, 3, 1));
        assert!(e.rule_put_upserts());
        assert!(!Engines::for_neuronex(Version::new(3, 5, 0)).rule_put_upserts());
        assert_eq!(Engines::for_neuronex(Version::new(3, 0, 0)).tag_error_status(), 206);
        assert_eq!(Engines::for_neuronex(Version::new(3, 1, 0)).tag_error_status(), 400);
        let e = Engines::for_neuronex(Version::new(3, 9, 2));
        assert_eq!((e.ekuiper, e.neuron), (Version::new(2, 4, 0), Version::new(2, 15, 0)));
        assert!(e.sink_enable() && e.download_guard() && e.login_key_per_start());
        assert!(!Engines::for_neuronex(Version::new(3, 9, 1)).sink_enable());
        assert!(!Engines::for_neuronex(Version::new(3, 7, 0)).login_key_per_start());
    }
}
