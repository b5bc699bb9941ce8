//! What a compiled binary is valid for, and MACE's rules for when a binary survives a driver change.

/// The identity of the GPU, driver and software a binary was built with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    /// CL_PLATFORM_NAME.
    pub platform_name: String,
    /// CL_PLATFORM_PROFILE.
    pub platform_profile: String,
    /// CL_PLATFORM_VERSION (on Adreno it carries the driver's build date and branch).
    pub platform_version: String,
    /// CL_DEVICE_NAME.
    pub device_name: String,
    /// CL_DEVICE_VERSION.
    pub device_version: String,
    /// CL_DRIVER_VERSION.
    pub driver_version: String,
    /// The OS build (Android's `ro.build.fingerprint`), from the caller.
    pub os_build_id: String,
    /// The app or model version, from the caller.
    pub app_version: String,
}

/// When cached binaries may be reused after the fingerprint changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReusePolicy {
    /// Only with an identical fingerprint.
    #[default]
    None,
    /// On the same GPU with a compatible driver (MACE's REUSE_SAME_GPU rules).
    SameGpu,
}

/// The stored names of the fields, in the order of [`Fingerprint::fields`] and
/// [`Fingerprint::fields_mut`]: the one table the stored form is written and read by.
const FIELDS: [&str; 8] = [
    "platform_name",
    "platform_profile",
    "platform_version",
    "device_name",
    "device_version",
    "driver_version",
    "os_build_id",
    "app_version",
];

impl Fingerprint {
    fn fields(&self) -> [&String; 8] {
        [
            &self.platform_name,
            &self.platform_profile,
            &self.platform_version,
            &self.device_name,
            &self.device_version,
            &self.driver_version,
            &self.os_build_id,
            &self.app_version,
        ]
    }

    fn fields_mut(&mut self) -> [&mut String; 8] {
        [
            &mut self.platform_name,
            &mut self.platform_profile,
            &mut self.platform_version,
            &mut self.device_name,
            &mut self.device_version,
            &mut self.driver_version,
            &mut self.os_build_id,
            &mut self.app_version,
        ]
    }

    /// The stored form: one `name=value` line per field, with `\\`, `\n` and `\r` escaped so
    /// that any value reads back unchanged.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::new();
        for (name, value) in FIELDS.iter().zip(self.fields()) {
            s.push_str(name);
            s.push('=');
            escape_into(&mut s, value);
            s.push('\n');
        }
        s.into_bytes()
    }

    /// Parses the stored form; unknown lines are ignored, missing fields are empty.
    pub fn parse(b: &[u8]) -> Fingerprint {
        let mut f = Fingerprint::default();
        for line in String::from_utf8_lossy(b).split('\n') {
            let Some((name, value)) = line.split_once('=') else {
                continue;
            };
            if let Some(i) = FIELDS.iter().position(|&n| n == name) {
                *f.fields_mut()[i] = unescape(value);
            }
        }
        f
    }

    /// Whether binaries built under `cached` may run under `self`; `Err` says why not.
    pub fn accepts(&self, cached: &Fingerprint, policy: ReusePolicy) -> Result<(), String> {
        if self.os_build_id != cached.os_build_id {
            return Err(format!(
                "the OS build changed ({:?} -> {:?})",
                cached.os_build_id, self.os_build_id
            ));
        }
        if self.app_version != cached.app_version {
            return Err(format!(
                "the app version changed ({:?} -> {:?})",
                cached.app_version, self.app_version
            ));
        }
        match policy {
            ReusePolicy::None => {
                let (now, then) = (self.fields(), cached.fields());
                let changed: Vec<&str> = (0..FIELDS.len())
                    .filter(|&i| now[i] != then[i])
                    .map(|i| FIELDS[i])
                    .collect();
                if changed.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "the GPU or driver changed ({})",
                        changed.join(", ")
                    ))
                }
            }
            ReusePolicy::SameGpu => {
                if self.device_name != cached.device_name
                    || self.platform_name != cached.platform_name
                {
                    return Err(format!(
                        "another GPU ({:?} -> {:?})",
                        cached.device_name, self.device_name
                    ));
                }
                driver_compatible(cached, self)
            }
        }
    }
}

/// Appends `value` with the three characters that would end or bend a line escaped.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// The inverse of [`escape_into`], in one pass, so an escaped backslash is never read again as the
/// start of another escape (`C:\\new` stays `C:\new`). An unknown escape keeps its backslash.
fn unescape(stored: &str) -> String {
    let mut out = String::with_capacity(stored.len());
    let mut chars = stored.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// The token after `label` in `s` (e.g. `Remote Branch: refs/tags/X` -> `refs/tags/X`).
fn token_after<'a>(s: &'a str, label: &str) -> Option<&'a str> {
    s.split(label).nth(1)?.split_whitespace().next()
}

/// `MM/DD/YY` as a comparable number.
fn date_key(d: &str) -> Option<u32> {
    let mut it = d.split('/').map(|p| p.parse::<u32>().ok());
    let (m, day, y) = (it.next()??, it.next()??, it.next()??);
    Some(y * 10_000 + m * 100 + day)
}

/// MACE's driver rules: Adreno drivers are compatible on the same `Remote Branch:`, else when the
/// new driver's `Date:` is not older; other GPUs need the same platform version.
fn driver_compatible(old: &Fingerprint, new: &Fingerprint) -> Result<(), String> {
    let adreno = new.device_name.contains("Adreno") || new.device_version.contains("Adreno");
    if !adreno {
        return if old.platform_version == new.platform_version {
            Ok(())
        } else {
            Err(format!(
                "the driver changed (platform version {:?} -> {:?})",
                old.platform_version, new.platform_version
            ))
        };
    }
    let info = |f: &Fingerprint| format!("{} {}", f.platform_version, f.driver_version);
    let (o, n) = (info(old), info(new));
    let (ob, nb) = (
        token_after(&o, "Remote Branch:"),
        token_after(&n, "Remote Branch:"),
    );
    if ob.is_some() && ob == nb {
        return Ok(());
    }
    match (
        token_after(&o, "Date:").and_then(date_key),
        token_after(&n, "Date:").and_then(date_key),
    ) {
        (Some(od), Some(nd)) if nd >= od => Ok(()),
        _ => Err("the Adreno driver changed to another branch and is not newer".into()),
    }
}

/// FNV-1a, 64 bits: a stable hash of a program's source and options (stored on disk, so it must not
/// change between builds the way std's hasher may).
pub fn source_hash(source: &[u8], options: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in source.iter().chain(&[0u8]).chain(options.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adreno(version: &str) -> Fingerprint {
        Fingerprint {
            platform_name: "QUALCOMM Snapdragon(TM)".into(),
            platform_version: version.into(),
            device_name: "QUALCOMM Adreno(TM)".into(),
            device_version: "OpenCL 2.0 Adreno(TM) 540".into(),
            ..Fingerprint::default()
        }
    }

    #[test]
    fn round_trips_through_bytes() {
        let mut f = adreno("OpenCL 2.0 QUALCOMM build: Date: 10/01/18 Remote Branch: refs/tags/A");
        f.os_build_id = "brand/x:11/RQ3A\nline".into();
        assert_eq!(Fingerprint::parse(&f.to_bytes()), f);
    }

    #[test]
    fn a_backslash_before_n_is_kept_as_written() {
        let f = Fingerprint {
            app_version: r"C:\new\n\\r".into(),
            os_build_id: "ends in a carriage return\r".into(),
            ..Fingerprint::default()
        };
        assert_eq!(Fingerprint::parse(&f.to_bytes()), f);
    }

    proptest::proptest! {
        #[test]
        fn any_fingerprint_round_trips(values in proptest::collection::vec(".*", 8)) {
            let mut f = Fingerprint::default();
            for (slot, v) in f.fields_mut().into_iter().zip(values) {
                *slot = v;
            }
            proptest::prop_assert_eq!(Fingerprint::parse(&f.to_bytes()), f);
        }
    }

    #[test]
    fn adreno_rules() {
        let old = adreno(
            "OpenCL 2.0 QUALCOMM build: commit #1 Date: 10/01/18 Mon Remote Branch: refs/tags/A",
        );
        let same_branch = adreno(
            "OpenCL 2.0 QUALCOMM build: commit #2 Date: 01/01/17 Mon Remote Branch: refs/tags/A",
        );
        let newer = adreno(
            "OpenCL 2.0 QUALCOMM build: commit #3 Date: 11/05/18 Mon Remote Branch: refs/tags/B",
        );
        let older = adreno(
            "OpenCL 2.0 QUALCOMM build: commit #4 Date: 09/30/18 Mon Remote Branch: refs/tags/B",
        );
        assert!(same_branch.accepts(&old, ReusePolicy::SameGpu).is_ok());
        assert!(newer.accepts(&old, ReusePolicy::SameGpu).is_ok());
        assert!(older.accepts(&old, ReusePolicy::SameGpu).is_err());
        assert!(newer.accepts(&old, ReusePolicy::None).is_err());
        assert!(old.accepts(&old, ReusePolicy::None).is_ok());
    }

    #[test]
    fn other_gpus_need_the_same_platform_version_and_everyone_the_same_os() {
        let a = Fingerprint {
            device_name: "Mali-G76".into(),
            platform_version: "OpenCL 2.1 v1.r26p0".into(),
            ..Fingerprint::default()
        };
        let mut b = a.clone();
        b.platform_version = "OpenCL 2.1 v1.r32p1".into();
        assert!(b.accepts(&a, ReusePolicy::SameGpu).is_err());
        let mut c = a.clone();
        c.os_build_id = "new-ota".into();
        assert!(c
            .accepts(&a, ReusePolicy::SameGpu)
            .unwrap_err()
            .contains("OS build"));
        assert_ne!(source_hash(b"k", "-DA"), source_hash(b"k", "-DB"));
        assert_eq!(source_hash(b"", ""), source_hash(b"", ""));
    }
}
