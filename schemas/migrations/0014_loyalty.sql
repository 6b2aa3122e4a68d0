-- Placeholder so that 0015 applies on the portal branch alone: the "loyalty" branch owns migration 0014.
-- When merging, keep the loyalty branch's version of this file (an add/add conflict: take theirs).
SELECT 1;
