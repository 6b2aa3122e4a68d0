-- Placeholder on the payouts branch only, so that 0017 applies in its tests (migrations refuse gaps).
-- Another branch owns number 0016: DELETE THIS FILE when merging (the other branch's 0016 replaces it).
SELECT 1;
