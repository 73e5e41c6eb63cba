//! External Ottofile libraries pinned to a commit, fetched by a real node from a real git
//! repository (`file://`) when it plans a run; refused with one line at the `use` when the
//! repository does not have the commit or the files are not the pinned ones.

use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::node_repo::git;
use crate::node_support::{Node, project, text};

/// The library digest of docs/plan-format.md, computed here from the files (not by the
/// code under test): for each file sorted by path, the path's and the content's lengths
/// as big-endian u64 before each.
fn library_digest(files: &[(&str, &str)]) -> String {
    let mut files = files.to_vec();
    files.sort();
    let mut hash = Sha256::new();
    for (path, content) in files {
        hash.update((path.len() as u64).to_be_bytes());
        hash.update(path.as_bytes());
        hash.update((content.len() as u64).to_be_bytes());
        hash.update(content.as_bytes());
    }
    hex::encode(hash.finalize())
}

const DEPLOY: &str = "blueprint {
  name = 'shipit'
  stages { stage('Ship') { steps { sh 'echo shipped by the library' } } }
}
";

fn commit_all(work: &Path, message: &str) -> String {
    git(work, &["add", "--all"]);
    git(work, &["commit", "--quiet", "-m", message]);
    git(work, &["rev-parse", "HEAD"])
}

#[test]
fn a_run_uses_a_library_the_node_fetched_at_its_pinned_commit_and_refuses_what_is_not_there() {
    let node = Node::start_new();
    let libs = tempfile::tempdir().unwrap();
    let work = libs.path().join("ops-lib");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "--quiet", "-b", "main"]);
    std::fs::write(work.join("deploy.otto"), DEPLOY).unwrap();
    let pinned = commit_all(&work, "library");
    git(&work, &["tag", "v1"]);
    // The tag moves on to other files: the pin is the commit, not the tag.
    std::fs::write(
        work.join("deploy.otto"),
        DEPLOY.replace("shipped", "hijacked"),
    )
    .unwrap();
    let moved = commit_all(&work, "moved");
    git(&work, &["tag", "--force", "v1", &moved]);
    let url = format!("file://{}", work.display());
    let digest = library_digest(&[("deploy.otto", DEPLOY)]);

    let ottofile = |commit: &str, digest: &str| {
        format!("use {{ '{url}' commit '{commit}' sha256 '{digest}' }}\nfrom 'shipit'\n")
    };
    let dir = project(&[("Ottofile", &ottofile(&pinned, &digest))]);
    let id = node
        .ok(&["run", dir.path().to_str().unwrap(), "--detach"])
        .trim()
        .to_owned();
    let status = node.wait_final(&id);
    assert_eq!(status["run"]["state"], "succeeded", "{status}");
    let logs = node.ok(&["logs", &id]);
    assert!(logs.contains("shipped by the library"), "{logs}");
    assert!(!logs.contains("hijacked"), "{logs}");
    // The library came through the node's mirror of its URL.
    assert!(node.home.join("mirrors").read_dir().unwrap().count() == 1);

    // A commit the repository does not have: one line at the `use`, no run.
    let missing = "0123abcd".repeat(5);
    let dir = project(&[("Ottofile", &ottofile(&missing, &digest))]);
    let out = node.otto(&["run", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("--> Ottofile:1:7"), "{err}");
    assert!(
        err.contains(&format!(
            "external library {url} at commit {missing} cannot be had: commit {missing} is not in {url}"
        )),
        "{err}"
    );
    // The tag's commit is not the pinned content: refused, naming the commit.
    let dir = project(&[("Ottofile", &ottofile(&moved, &digest))]);
    let out = node.otto(&["run", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("pinned digest does not match"), "{err}");
    assert!(
        err.contains(&format!("commit {moved} holds sha256:")),
        "{err}"
    );
    // A transport helper in the URL: refused before git runs.
    let hostile =
        format!("use {{ 'ext::sh' commit '{pinned}' sha256 '{digest}' }}\nfrom 'shipit'\n");
    let dir = project(&[("Ottofile", &hostile)]);
    let out = node.otto(&["run", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("transport helpers"), "{err}");
    assert!(!err.contains('\n') || err.contains("-->"), "{err}");
}
