-- Why part of a conversion earns nothing, in words the partner reads on its orders (e.g. an item of a
-- markup basket without a retail price for the partner). NULL when everything in it earns.

ALTER TABLE conversions ADD COLUMN note text;
