//! The sample application the demo delivers (`testnet/sample/`), built into the binary so
//! `otto-testnet` works from anywhere: a tiny "shop" with build, test, deploy and
//! health-check scripts, and the Ottofile that delivers it across two orgs.

use std::path::Path;

use crate::Error;
use crate::net::write_file;

/// The sample's files: path in the application, contents.
pub const FILES: &[(&str, &str)] = &[
    ("Ottofile", include_str!("../sample/Ottofile")),
    ("VERSION", include_str!("../sample/VERSION")),
    ("shop.sh", include_str!("../sample/shop.sh")),
    ("build.sh", include_str!("../sample/build.sh")),
    ("test.sh", include_str!("../sample/test.sh")),
    ("deploy.sh", include_str!("../sample/deploy.sh")),
    ("healthy.sh", include_str!("../sample/healthy.sh")),
];

/// The application's version, as `VERSION` says.
pub fn version() -> &'static str {
    include_str!("../sample/VERSION").trim()
}

/// Writes the sample application into `dir`.
pub fn write_to(dir: &Path) -> Result<(), Error> {
    for (path, text) in FILES {
        write_file(&dir.join(path), text.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_sample_directory_is_in_the_binary() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(p, _)| (*p).to_owned()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }
}
