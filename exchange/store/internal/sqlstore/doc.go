// Package sqlstore holds what the SQLite and PostgreSQL stores share: column
// encodings, input validation, and the loading of embedded, versioned schema
// migrations.
package sqlstore
