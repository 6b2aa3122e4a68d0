-- Placeholder kept by the attrib branch so that 0016 loads without a gap; the coordinator deletes this file
-- when the real 0014 migration of another branch is merged. It changes nothing.
SELECT 1;
