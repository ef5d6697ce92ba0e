//! Database schema migrations (sea-orm-migration). Populated with the storage layer.
