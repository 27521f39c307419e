//! The changelog's value schema evolves BACKWARD compatibly, as the real registry judges it.
//!
//! `tests/data/reading.v1.before-catalog.avsc` is `schemas/reading.v1.avsc` as it was before
//! the catalog fields (`unit_ucum`, `loinc`, `activity`) were added: consumers built on it
//! must keep working, so the registry must accept today's schema as the next version of a
//! subject holding the old one. The refusal case proves the registry really checks.

use bridge_core::SchemaRegistry;

const BEFORE: &str = include_str!("data/reading.v1.before-catalog.avsc");
const NOW: &str = include_str!("../schemas/reading.v1.avsc");

#[tokio::test]
async fn todays_reading_schema_is_a_backward_compatible_next_version() {
    let registry = SchemaRegistry::new(&bridge_tests::registry_url()).unwrap();
    let subject = bridge_tests::unique("compat-readings-value");

    let old = registry.register(&subject, BEFORE).await.unwrap();
    let new = registry
        .register(&subject, NOW)
        .await
        .expect("the registry refused today's schema as the next version of the old one");
    assert_ne!(
        old.id(),
        new.id(),
        "the registry did not store a new version"
    );

    // A field added without a default breaks BACKWARD compatibility (old records cannot be
    // read with it): the registry must refuse it, or the acceptance above proves nothing.
    let breaking = NOW.replacen(
        r#"{"name": "raw_offset", "type": "long""#,
        r#"{"name": "required_new_field", "type": "string"}, {"name": "raw_offset", "type": "long""#,
        1,
    );
    assert_ne!(breaking, NOW);
    let refused = registry.register(&subject, &breaking).await;
    assert!(
        refused.is_err(),
        "the registry accepted a field without a default: compatibility is not enforced"
    );
}

#[test]
fn the_schema_documents_the_catalog_fields_with_null_defaults() {
    let schema: serde_json::Value = serde_json::from_str(NOW).unwrap();
    let fields = schema["fields"].as_array().unwrap();
    for name in ["unit_ucum", "loinc", "activity"] {
        let field = fields
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no field {name}"));
        assert_eq!(field["default"], serde_json::Value::Null, "{name}");
        assert_eq!(
            field["type"],
            serde_json::json!(["null", "string"]),
            "{name}"
        );
    }
}
