//! The list of Lambda functions exists once: the `src/bin/*.rs` files of the packages under
//! `functions/`, which Cargo builds as binaries of the same names. The Makefile derives its list
//! from the same files; the tests here check that the template, Cargo's own view of the workspace
//! and the README's function table say the same.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};

use crate::template::workspace_root;

/// Every Lambda binary, with the package under `functions/` that builds it.
pub fn packages() -> Result<BTreeMap<String, String>> {
    let mut found = BTreeMap::new();
    let functions = workspace_root().join("functions");
    for package in std::fs::read_dir(&functions).context("reading functions/")? {
        let package = package?.path();
        let bins = package.join("src").join("bin");
        if !bins.is_dir() {
            continue;
        }
        let name = package
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for bin in std::fs::read_dir(&bins)? {
            let path = bin?.path();
            if path.extension().is_some_and(|e| e == "rs")
                && let Some(stem) = path.file_stem()
            {
                found.insert(stem.to_string_lossy().into_owned(), name.clone());
            }
        }
    }
    Ok(found)
}

/// Every Lambda binary of the workspace.
pub fn binaries() -> Result<BTreeSet<String>> {
    Ok(packages()?.into_keys().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;

    #[test]
    fn the_template_deploys_exactly_the_workspace_binaries() {
        let template = Template::load().unwrap();
        let deployed: BTreeSet<String> = template.function_binaries().into_iter().collect();
        assert_eq!(deployed, binaries().unwrap());
    }

    #[test]
    fn cargo_builds_exactly_these_binaries_from_functions() {
        let output = std::process::Command::new(env!("CARGO"))
            .args([
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--offline",
            ])
            .current_dir(workspace_root())
            .output()
            .expect("cargo metadata runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let root = workspace_root().join("functions");
        let mut built = BTreeSet::new();
        for package in metadata["packages"].as_array().unwrap() {
            let manifest = package["manifest_path"].as_str().unwrap();
            if !std::path::Path::new(manifest).starts_with(&root) {
                continue;
            }
            for target in package["targets"].as_array().unwrap() {
                if target["kind"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k == "bin")
                {
                    built.insert(target["name"].as_str().unwrap().to_owned());
                }
            }
        }
        assert_eq!(built, binaries().unwrap());
    }

    #[test]
    fn the_readme_lists_every_function_once() {
        let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
        // The function table: rows of `| `binary` | `functions/package` | ... |`.
        let listed: Vec<(String, String)> = readme
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let binary = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                let package = cells
                    .get(2)?
                    .strip_prefix("`functions/")?
                    .strip_suffix('`')?;
                Some((binary.to_owned(), package.to_owned()))
            })
            .collect();
        let unique: BTreeMap<String, String> = listed.iter().cloned().collect();
        assert_eq!(unique.len(), listed.len(), "a function listed twice");
        assert_eq!(unique, packages().unwrap(), "README function table");
    }
}

#[cfg(test)]
mod guard_tests {
    use std::collections::BTreeSet;

    use crate::template::Template;

    /// `spotctl pause --function` names only functions that read the pauses, and every function
    /// the template lets read them is one `--function` may name.
    #[test]
    fn the_pausable_functions_are_those_that_read_the_pauses() {
        let template = Template::load().unwrap();
        let reading: BTreeSet<String> = template
            .resources_of_type("AWS::Serverless::Function")
            .filter(|(_, f)| {
                f["Properties"]["Policies"].as_sequence().is_some_and(|p| {
                    p.iter().any(|p| {
                        matches!(p, serde_norway::Value::Tagged(t)
                            if t.tag == "Ref" && t.value.as_str() == Some("ReadThePausesPolicy"))
                    })
                })
            })
            .filter_map(|(id, _)| template.function_binary(id))
            .collect();
        let named: BTreeSet<String> = spot_domain::guard::FUNCTIONS
            .iter()
            .map(|f| (*f).to_owned())
            .collect();
        assert_eq!(reading, named);
    }
}
