-- An action without an order id counts once per click and action name; a repeat is rejected as
-- duplicate_action, unless the offer pays every repeat (a survey answered each week, a game level).

ALTER TABLE offers ADD COLUMN repeat_actions boolean NOT NULL DEFAULT false;
