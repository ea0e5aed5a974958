//! What the operator's own checkout knows of a branch: `orun fleet` compares each node's
//! applied commit with it, without asking the remote (the operator's credentials for it are
//! not the agent's business).

use std::path::Path;

use git2::Repository;

/// The tip of `branch` in the repository holding `dir`: `origin`'s copy as last fetched
/// (`refs/remotes/origin/<branch>`), else the local branch. `None` when neither exists or
/// `dir` is not in a repository.
pub fn branch_tip(dir: &Path, branch: &str) -> Option<String> {
    let repo = Repository::discover(dir).ok()?;
    [
        format!("refs/remotes/origin/{branch}"),
        format!("refs/heads/{branch}"),
    ]
    .iter()
    .find_map(|name| {
        repo.find_reference(name)
            .ok()?
            .peel_to_commit()
            .ok()
            .map(|c| c.id().to_string())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn finds_origins_copy_first_then_the_local_branch() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let sig = git2::Signature::now("t", "t@example.invalid").unwrap();
        let tree = repo
            .find_tree(repo.index().unwrap().write_tree().unwrap())
            .unwrap();
        let one = repo
            .commit(Some("refs/heads/main"), &sig, &sig, "one", &tree, &[])
            .unwrap();
        assert_eq!(branch_tip(dir.path(), "main"), Some(one.to_string()));
        assert_eq!(branch_tip(dir.path(), "prod"), None);
        let parent = repo.find_commit(one).unwrap();
        let two = repo
            .commit(None, &sig, &sig, "two", &tree, &[&parent])
            .unwrap();
        repo.reference("refs/remotes/origin/main", two, true, "fetched")
            .unwrap();
        assert_eq!(branch_tip(dir.path(), "main"), Some(two.to_string()));
        let nowhere = tempfile::tempdir().unwrap();
        assert_eq!(branch_tip(nowhere.path(), "main"), None);
    }
}
