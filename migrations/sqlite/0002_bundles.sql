-- hisp schema v2 (SQLite): refresh bookkeeping for trust bundles. The tables themselves came
-- with v1. Keep in step with ../postgres/0002_bundles.sql.

-- Every failed refresh since the bundle was added (for /metrics), and the failures since the
-- last success (for alerting on a bundle that stays broken).
ALTER TABLE bundles ADD COLUMN failure_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bundles ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bundles ADD COLUMN anchor_count INTEGER NOT NULL DEFAULT 0;

-- Trust decisions read a domain's bundle anchors on every snapshot reload.
CREATE INDEX bundle_domains_domain ON bundle_domains(domain_id);
