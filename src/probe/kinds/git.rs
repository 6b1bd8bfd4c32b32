//! The `git` probe (informational): the state of a repository mounted into medic, read straight
//! from the `.git` directory, so no git binary is needed in the image.
//!
//! - branch and commit: `HEAD`, then the loose ref file or `packed-refs`;
//! - uncommitted changes: tracked files whose content differs from the index. The index
//!   (versions 2 to 4) is read and each tracked file is compared by size and modification time,
//!   and by SHA-1 of its content when those differ, as `git status` does. Untracked files and
//!   changes that are staged but not committed are not reported (that would need the object
//!   database; the `gix` crate does it but is far too heavy for this one check). SHA-256
//!   repositories skip this check.
//! - remote reachable: a TCP connection to the host of the remote's URL (`origin`), from
//!   `.git/config`. No git protocol is spoken and no credentials are used.
//!
//! An unreachable remote is a warning; a path that is not a repository is a failure. It never
//! restarts anything.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::{Key, Kind, Res, Resolver, Shape};
use crate::probe::secret::mask_uri;
use crate::probe::{Failure, ProbeContext, Recorder, Severity};

/// Settings of a `git` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct GitSettings {
    /// The repository's work tree (the directory holding `.git`).
    pub path: PathBuf,
    /// Remote whose host must be reachable (default `origin`).
    pub remote: String,
    /// Whether to try a TCP connection to the remote's host (default true).
    pub check_remote: bool,
}

impl Kind for GitSettings {
    const TYPE: &'static str = "git";
    const KEYS: &'static [Key] = &[
        ("path", Shape::Scalar),
        ("remote", Shape::Scalar),
        ("check_remote", Shape::Scalar),
    ];
    const INFORMATIONAL: bool = true;

    fn resolve(r: &Resolver) -> Res<GitSettings> {
        Ok(GitSettings {
            path: PathBuf::from(
                r.required("path", "the repository's directory as mounted into medic")?,
            ),
            remote: r.text_or("remote", "origin")?,
            check_remote: r.boolean("check_remote", true)?,
        })
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }

    async fn run(&self, _ctx: &ProbeContext, rec: &Recorder) -> Result<(), Failure> {
        run(self, rec).await
    }
}

/// How many changed paths are listed in the details (the count is always exact).
const LISTED_CHANGES: usize = 20;

/// What was read from the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepoState {
    /// Branch name, `None` when HEAD is detached.
    pub branch: Option<String>,
    /// Full commit id, `None` in a repository without commits.
    pub commit: Option<String>,
    /// The remote's URL, if the remote is configured.
    pub remote_url: Option<String>,
    /// Changed tracked files (relative paths), `None` when the check was skipped.
    pub changes: Option<Vec<String>>,
}

async fn run(s: &GitSettings, rec: &Recorder) -> Result<(), Failure> {
    let path = s.path.clone();
    let remote = s.remote.clone();
    let state = rec
        .step("read repository", async move {
            tokio::task::spawn_blocking(move || read_repo(&path, &remote))
                .await
                .map_err(|e| format!("reading the repository crashed: {e}"))?
        })
        .await?;
    rec.detail("path", s.path.display().to_string());
    rec.detail("branch", state.branch.clone());
    rec.detail("commit", state.commit.clone());
    rec.detail(
        "short_commit",
        state
            .commit
            .as_ref()
            .map(|c| c[..c.len().min(7)].to_string()),
    );
    match &state.changes {
        Some(changes) => {
            rec.detail("dirty", !changes.is_empty());
            rec.detail("changed_files", changes.len());
            rec.detail(
                "changes",
                changes
                    .iter()
                    .take(LISTED_CHANGES)
                    .cloned()
                    .collect::<Vec<_>>(),
            );
        }
        None => rec.detail("dirty", serde_json::Value::Null),
    }
    rec.note(format!(
        "{} at {}{}",
        state.branch.as_deref().unwrap_or("detached HEAD"),
        state
            .commit
            .as_deref()
            .map(|c| &c[..c.len().min(7)])
            .unwrap_or("no commit"),
        match &state.changes {
            Some(c) if !c.is_empty() => format!(", {} changed files", c.len()),
            Some(_) => ", clean".to_string(),
            None => String::new(),
        }
    ));

    let Some(url) = state.remote_url else {
        rec.detail("remote", serde_json::Value::Null);
        if s.check_remote {
            rec.finding(
                Severity::Warning,
                format!(
                    "remote {:?} is not configured in {}",
                    s.remote,
                    s.path.display()
                ),
            );
        }
        return Ok(());
    };
    rec.detail("remote", mask_uri(&url));
    if !s.check_remote {
        return Ok(());
    }
    let Some((host, port)) = remote_address(&url) else {
        rec.detail("remote_reachable", serde_json::Value::Null);
        return Ok(());
    };
    let reached = rec
        .step("remote", async {
            tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| format!("cannot reach {host}:{port}: {e}"))
        })
        .await;
    rec.detail("remote_reachable", reached.is_ok());
    if let Err(failure) = reached {
        rec.finding(
            Severity::Warning,
            format!("remote {:?} unreachable: {}", s.remote, failure.message),
        );
    }
    Ok(())
}

/// Reads branch, commit, remote URL and changes.
pub(crate) fn read_repo(work_tree: &Path, remote: &str) -> Result<RepoState, String> {
    let git_dir = find_git_dir(work_tree)?;
    let common_dir = match fs::read_to_string(git_dir.join("commondir")) {
        Ok(rel) => git_dir.join(rel.trim()),
        Err(_) => git_dir.clone(),
    };
    let head = fs::read_to_string(git_dir.join("HEAD"))
        .map_err(|e| format!("cannot read {}: {e}", git_dir.join("HEAD").display()))?;
    let head = head.trim();
    let (branch, commit) = match head.strip_prefix("ref:") {
        Some(reference) => {
            let reference = reference.trim();
            let branch = reference
                .strip_prefix("refs/heads/")
                .unwrap_or(reference)
                .to_string();
            (
                Some(branch),
                resolve_ref(&git_dir, &common_dir, reference, 0)?,
            )
        }
        None if is_object_id(head) => (None, Some(head.to_string())),
        None => return Err(format!("HEAD holds {head:?}, not a ref or commit id")),
    };
    let config = fs::read_to_string(common_dir.join("config")).unwrap_or_default();
    let remote_url = config_value(&config, &format!("remote \"{remote}\""), "url");
    let sha256 = config_value(&config, "extensions", "objectformat")
        .is_some_and(|f| f.eq_ignore_ascii_case("sha256"));
    let changes = if sha256 {
        None
    } else {
        match fs::read(git_dir.join("index")) {
            Ok(index) => Some(changed_files(work_tree, &index)?),
            // No index: nothing was ever staged, so no tracked file can differ.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Vec::new()),
            Err(e) => return Err(format!("cannot read the index: {e}")),
        }
    };
    Ok(RepoState {
        branch,
        commit,
        remote_url,
        changes,
    })
}

fn is_object_id(text: &str) -> bool {
    (text.len() == 40 || text.len() == 64) && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// The `.git` directory of a work tree: `.git` itself, a `.git` file (`gitdir: …`, worktrees
/// and submodules), or the path when it already is a git directory.
fn find_git_dir(path: &Path) -> Result<PathBuf, String> {
    let dot_git = path.join(".git");
    if dot_git.is_dir() {
        return Ok(dot_git);
    }
    if dot_git.is_file() {
        let text = fs::read_to_string(&dot_git)
            .map_err(|e| format!("cannot read {}: {e}", dot_git.display()))?;
        let target = text
            .trim()
            .strip_prefix("gitdir:")
            .ok_or_else(|| format!("{} does not say `gitdir: …`", dot_git.display()))?
            .trim();
        return Ok(path.join(target));
    }
    if path.join("HEAD").is_file() && path.join("objects").is_dir() {
        return Ok(path.to_path_buf());
    }
    if !path.exists() {
        return Err(format!(
            "{} does not exist: mount the repository into medic's container",
            path.display()
        ));
    }
    Err(format!(
        "{} is not a git repository (no .git)",
        path.display()
    ))
}

/// Follows a ref to a commit id: the loose file, then packed-refs. `None` for an unborn branch.
fn resolve_ref(
    git_dir: &Path,
    common_dir: &Path,
    reference: &str,
    depth: u32,
) -> Result<Option<String>, String> {
    if depth > 5 {
        return Err(format!("the ref {reference} is a loop of symbolic refs"));
    }
    for dir in [git_dir, common_dir] {
        if let Ok(text) = fs::read_to_string(dir.join(reference)) {
            let text = text.trim();
            if let Some(next) = text.strip_prefix("ref:") {
                return resolve_ref(git_dir, common_dir, next.trim(), depth + 1);
            }
            if is_object_id(text) {
                return Ok(Some(text.to_string()));
            }
            return Err(format!("the ref {reference} holds {text:?}"));
        }
    }
    let packed = fs::read_to_string(common_dir.join("packed-refs")).unwrap_or_default();
    Ok(packed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('^'))
        .filter_map(|l| l.split_once(' '))
        .find(|(_, name)| name.trim() == reference)
        .map(|(id, _)| id.to_string()))
}

/// A value from git's config format: `key` in section `section` (`remote "origin"`).
fn config_value(config: &str, section: &str, key: &str) -> Option<String> {
    let mut in_section = false;
    for line in config.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            let header = line.trim_start_matches('[').trim_end_matches(']').trim();
            // Section names are case-insensitive, subsection names (in quotes) are not.
            let (name, sub) = match header.split_once(' ') {
                Some((n, s)) => (n, Some(s.trim())),
                None => (header, None),
            };
            let (want_name, want_sub) = match section.split_once(' ') {
                Some((n, s)) => (n, Some(s)),
                None => (section, None),
            };
            in_section = name.eq_ignore_ascii_case(want_name) && sub == want_sub;
            continue;
        }
        if !in_section || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            if k.trim().eq_ignore_ascii_case(key) {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                return Some(v.to_string());
            }
        }
    }
    None
}

/// Host and port of a remote URL: `https://`, `http://`, `ssh://`, `git://` or scp-like
/// `user@host:path`. `None` for local paths and `file://`.
pub(crate) fn remote_address(url: &str) -> Option<(String, u16)> {
    if let Some((scheme, _)) = url.split_once("://") {
        let default_port = match scheme {
            "https" => 443,
            "http" => 80,
            "ssh" | "git+ssh" | "ssh+git" => 22,
            "git" => 9418,
            _ => return None,
        };
        let parsed = reqwest::Url::parse(url).ok()?;
        let host = parsed.host_str()?.trim_matches(['[', ']']).to_string();
        return Some((host, parsed.port().unwrap_or(default_port)));
    }
    // scp-like: [user@]host:path, where the host has no '/'.
    let (host_part, _) = url.split_once(':')?;
    if host_part.contains('/') || host_part.is_empty() {
        return None;
    }
    let host = host_part.rsplit('@').next()?;
    Some((host.to_string(), 22))
}

/// Tracked files whose content differs from the index, or that are gone.
fn changed_files(work_tree: &Path, index: &[u8]) -> Result<Vec<String>, String> {
    let entries = parse_index(index)?;
    let mut changed = Vec::new();
    for entry in entries {
        if entry.skip {
            continue;
        }
        let path = work_tree.join(&entry.path);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => {
                changed.push(entry.path);
                continue;
            }
        };
        let differs = if entry.mode & 0o170000 == 0o120000 {
            // A symlink: its content is the target path.
            match fs::read_link(&path) {
                Ok(target) => blob_id(target.as_os_str().as_encoded_bytes()) != entry.id,
                Err(_) => true,
            }
        } else if !meta.is_file() || meta.len() as u32 != entry.size {
            // The index keeps the size truncated to 32 bits.
            true
        } else if same_mtime(&meta, entry.mtime) {
            false
        } else {
            file_blob_id(&path).map_or(true, |id| id != entry.id)
        };
        if differs {
            changed.push(entry.path);
        }
    }
    Ok(changed)
}

fn same_mtime(meta: &fs::Metadata, (secs, nanos): (u32, u32)) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.mtime() == i64::from(secs) && meta.mtime_nsec() == i64::from(nanos)
}

fn blob_id(content: &[u8]) -> [u8; 20] {
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {}\0", content.len()).as_bytes());
    hasher.update(content);
    hasher.finalize().into()
}

fn file_blob_id(path: &Path) -> std::io::Result<[u8; 20]> {
    let mut file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {len}\0").as_bytes());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// One index entry, as far as the comparison needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IndexEntry {
    /// Path relative to the work tree.
    path: String,
    /// File mode (regular, executable, symlink, gitlink).
    mode: u32,
    /// Modification time when staged (seconds, nanoseconds).
    mtime: (u32, u32),
    /// Size when staged (truncated to 32 bits).
    size: u32,
    /// The blob id.
    id: [u8; 20],
    /// Entries not to compare: submodules, assume-unchanged, skip-worktree, intent-to-add,
    /// merge stages.
    skip: bool,
}

/// Parses a version 2, 3 or 4 index file (see git's `Documentation/gitformat-index.txt`).
fn parse_index(data: &[u8]) -> Result<Vec<IndexEntry>, String> {
    let bad = |what: &str| format!("the index is not readable: {what}");
    let u32_at = |at: usize| -> Result<u32, String> {
        data.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| bad("truncated"))
    };
    if data.get(..4) != Some(b"DIRC") {
        return Err(bad("no DIRC signature"));
    }
    let version = u32_at(4)?;
    if !(2..=4).contains(&version) {
        return Err(bad(&format!("unsupported version {version}")));
    }
    let count = u32_at(8)? as usize;
    let mut entries = Vec::with_capacity(count.min(1 << 20));
    let mut at = 12;
    let mut previous_path: Vec<u8> = Vec::new();
    for _ in 0..count {
        let start = at;
        let mtime = (u32_at(at + 8)?, u32_at(at + 12)?);
        let mode = u32_at(at + 24)?;
        let size = u32_at(at + 36)?;
        let id: [u8; 20] = data
            .get(at + 40..at + 60)
            .ok_or_else(|| bad("truncated"))?
            .try_into()
            .map_err(|_| bad("truncated"))?;
        let flags = u16::from_be_bytes(
            data.get(at + 60..at + 62)
                .ok_or_else(|| bad("truncated"))?
                .try_into()
                .map_err(|_| bad("truncated"))?,
        );
        at += 62;
        let mut extended_flags = 0u16;
        if flags & 0x4000 != 0 {
            extended_flags = u16::from_be_bytes(
                data.get(at..at + 2)
                    .ok_or_else(|| bad("truncated"))?
                    .try_into()
                    .map_err(|_| bad("truncated"))?,
            );
            at += 2;
        }
        let path = if version == 4 {
            // Bytes to drop from the previous path, as git's offset varint, then the suffix.
            let mut byte = *data.get(at).ok_or_else(|| bad("truncated"))?;
            at += 1;
            let mut strip = usize::from(byte & 0x7f);
            while byte & 0x80 != 0 {
                byte = *data.get(at).ok_or_else(|| bad("truncated"))?;
                at += 1;
                strip = ((strip + 1) << 7) | usize::from(byte & 0x7f);
            }
            let end = data[at..]
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| bad("unterminated path"))?;
            let keep = previous_path
                .len()
                .checked_sub(strip)
                .ok_or_else(|| bad("bad path prefix"))?;
            let mut path = previous_path[..keep].to_vec();
            path.extend_from_slice(&data[at..at + end]);
            at += end + 1;
            path
        } else {
            let end = data
                .get(at..)
                .and_then(|rest| rest.iter().position(|&b| b == 0))
                .ok_or_else(|| bad("unterminated path"))?;
            let path = data[at..at + end].to_vec();
            // Entries are padded with 1 to 8 NULs to a multiple of 8 bytes.
            let length = at + end - start;
            at = start + (length + 8) / 8 * 8;
            path
        };
        let stage = (flags >> 12) & 0x3;
        let assume_valid = flags & 0x8000 != 0;
        let skip_worktree = extended_flags & 0x4000 != 0;
        let intent_to_add = extended_flags & 0x2000 != 0;
        let gitlink = mode & 0o170000 == 0o160000;
        entries.push(IndexEntry {
            path: String::from_utf8_lossy(&path).into_owned(),
            mode,
            mtime,
            size,
            id,
            skip: stage != 0 || assume_valid || skip_worktree || intent_to_add || gitlink,
        });
        previous_path = path;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::kinds::from_yaml;

    #[test]
    fn remote_addresses_of_every_url_form() {
        let cases = [
            ("https://github.com/o/r.git", Some(("github.com", 443))),
            ("http://git.local:3000/o/r", Some(("git.local", 3000))),
            (
                "ssh://git@host.example:2222/o/r.git",
                Some(("host.example", 2222)),
            ),
            ("git@github.com:o/r.git", Some(("github.com", 22))),
            ("git://host/o/r", Some(("host", 9418))),
            ("https://user:tok@h.example/r", Some(("h.example", 443))),
            ("/srv/repos/r.git", None),
            ("file:///srv/r.git", None),
            ("../r.git", None),
        ];
        for (url, expected) in cases {
            let got = remote_address(url);
            assert_eq!(
                got.as_ref().map(|(h, p)| (h.as_str(), *p)),
                expected,
                "{url}"
            );
        }
    }

    #[test]
    fn config_values_by_section_and_subsection() {
        let config = "[core]\n\tbare = false\n[remote \"upstream\"]\n\turl = a\n[remote \"origin\"]\n\tURL = \"https://h/r\"\n[Extensions]\n\tobjectFormat = sha256\n";
        assert_eq!(
            config_value(config, "remote \"origin\"", "url").as_deref(),
            Some("https://h/r")
        );
        assert_eq!(
            config_value(config, "remote \"upstream\"", "url").as_deref(),
            Some("a")
        );
        assert_eq!(
            config_value(config, "extensions", "objectformat").as_deref(),
            Some("sha256")
        );
        assert_eq!(config_value(config, "remote \"x\"", "url"), None);
    }

    #[test]
    fn garbage_index_is_an_error() {
        assert!(parse_index(b"NOPE").is_err());
        assert!(parse_index(b"DIRC\0\0\0\x09\0\0\0\0").is_err());
        assert!(parse_index(b"DIRC\0\0\0\x02\0\0\0\x05").is_err());
        assert_eq!(parse_index(b"DIRC\0\0\0\x02\0\0\0\0").unwrap(), vec![]);
    }

    #[test]
    fn a_path_is_required_and_the_remote_is_checked_by_default() {
        let e = from_yaml("type: git").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("path"));
        let spec = from_yaml("type: git\npath: /repo\ncheck_remote: no").unwrap();
        let crate::probe::ProbeKind::Git(g) = &spec.kind else {
            panic!()
        };
        assert_eq!((g.remote.as_str(), g.check_remote), ("origin", false));
        let e = from_yaml("type: git\npath: /repo\ncheck_remote: maybe").unwrap_err();
        assert!(e.to_string().ends_with("expected true or false"), "{e}");
    }
}
