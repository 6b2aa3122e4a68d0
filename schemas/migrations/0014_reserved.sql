-- Placeholder on the payouts branch only, so that 0017 applies in its tests (migrations refuse gaps).
-- Another branch owns number 0014: DELETE THIS FILE when merging (the other branch's 0014 replaces it).
SELECT 1;
