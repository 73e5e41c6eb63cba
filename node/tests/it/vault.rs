//! The vault on a real store.

use otto_node::store::Store;
use otto_node::vault::{MAX_VALUE, Vault, VaultError, validate_name};
use rand::SeedableRng;
use rand::rngs::StdRng;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const NODE_SECRET: [u8; 32] = [0x42; 32];

#[test]
fn secrets_round_trip_and_survive_reopening() -> Result {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store.redb");
    let mut rng = StdRng::seed_from_u64(7);
    {
        let vault = Vault::new(Store::open(&path)?, &NODE_SECRET);
        vault.set("DEPLOY_TOKEN", b"hunter2", &mut rng)?;
        vault.set("DB_PASSWORD", b"multi\nline\nsecret", &mut rng)?;
        vault.set("DEPLOY_TOKEN", b"hunter3", &mut rng)?;
        assert_eq!(
            vault.get("DEPLOY_TOKEN")?.as_ref().map(|s| s.expose()),
            Some(b"hunter3".as_slice())
        );
    }
    // The database file never holds a value in the clear.
    let raw = std::fs::read(&path)?;
    for value in [b"hunter2".as_slice(), b"hunter3", b"multi\nline"] {
        assert!(!raw.windows(value.len()).any(|w| w == value));
    }
    let vault = Vault::new(Store::open(&path)?, &NODE_SECRET);
    assert_eq!(vault.list()?, ["DB_PASSWORD", "DEPLOY_TOKEN"]);
    assert_eq!(
        vault
            .get("DB_PASSWORD")?
            .and_then(|s| s.expose_str().map(String::from)),
        Some("multi\nline\nsecret".into())
    );
    assert!(vault.remove("DB_PASSWORD")?);
    assert!(!vault.remove("DB_PASSWORD")?);
    assert!(vault.get("DB_PASSWORD")?.is_none());
    assert_eq!(vault.list()?, ["DEPLOY_TOKEN"]);
    Ok(())
}

#[test]
fn another_node_key_cannot_read_the_secrets() -> Result {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("store.redb"))?;
    let mut rng = StdRng::seed_from_u64(8);
    Vault::new(store.clone(), &NODE_SECRET).set("API_KEY", b"k", &mut rng)?;
    let mut other = NODE_SECRET;
    other[31] ^= 1;
    let thief = Vault::new(store, &other);
    assert!(matches!(thief.get("API_KEY"), Err(VaultError::Decrypt(name)) if name == "API_KEY"));
    // Names are not secret: they list with any key.
    assert_eq!(thief.list()?, ["API_KEY"]);
    Ok(())
}

#[test]
fn secrets_for_hands_out_exactly_the_names_asked_for() -> Result {
    let dir = tempfile::tempdir()?;
    let vault = Vault::new(Store::open(dir.path().join("store.redb"))?, &NODE_SECRET);
    let mut rng = StdRng::seed_from_u64(9);
    vault.set("A", b"a", &mut rng)?;
    vault.set("B", b"b", &mut rng)?;
    vault.set("C", b"c", &mut rng)?;
    let given = vault.secrets_for(&["A", "C"])?;
    let names: Vec<_> = given.keys().map(String::as_str).collect();
    assert_eq!(names, ["A", "C"]);
    assert_eq!(given["C"].expose(), b"c");
    assert!(vault.secrets_for::<&str>(&[])?.is_empty());
    let err = vault.secrets_for(&["Z", "A", "Y", "Z"]).err();
    assert!(matches!(&err, Some(VaultError::Missing(names)) if names == &["Y", "Z"]));
    assert_eq!(
        err.map(|e| e.to_string()),
        Some("missing secrets: Y, Z".into())
    );
    Ok(())
}

#[test]
fn debug_output_never_shows_values() -> Result {
    let dir = tempfile::tempdir()?;
    let vault = Vault::new(Store::open(dir.path().join("store.redb"))?, &NODE_SECRET);
    vault.set("TOKEN", b"s3cr3t-value", &mut StdRng::seed_from_u64(10))?;
    let secret = vault.get("TOKEN")?.ok_or("secret lost")?;
    let map = vault.secrets_for(&["TOKEN"])?;
    for text in [
        format!("{vault:?}"),
        format!("{secret:?}"),
        format!("{map:?}"),
        format!("{:?}", Some(&secret)),
    ] {
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(!text.contains("115, 51"), "{text}");
    }
    assert_eq!(format!("{secret:?}"), "Secret(***)");
    Ok(())
}

#[test]
fn names_and_sizes_are_checked() -> Result {
    let dir = tempfile::tempdir()?;
    let vault = Vault::new(Store::open(dir.path().join("store.redb"))?, &NODE_SECRET);
    let mut rng = StdRng::seed_from_u64(11);
    for good in ["A", "_", "AWS_SECRET_ACCESS_KEY", "X9", &"N".repeat(128)] {
        assert!(validate_name(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "lower",
        "9LIVES",
        "WITH-DASH",
        "WITH SPACE",
        "ÄRGER",
        "../ETC",
        &"N".repeat(129),
    ] {
        assert!(
            matches!(vault.set(bad, b"v", &mut rng), Err(VaultError::Name(_))),
            "{bad}"
        );
        assert!(matches!(vault.get(bad), Err(VaultError::Name(_))), "{bad}");
    }
    vault.set("BIG", &vec![0; MAX_VALUE], &mut rng)?;
    assert!(matches!(
        vault.set("BIGGER", &vec![0; MAX_VALUE + 1], &mut rng),
        Err(VaultError::TooLarge(n)) if n == MAX_VALUE + 1
    ));
    assert_eq!(vault.list()?, ["BIG"]);
    Ok(())
}
