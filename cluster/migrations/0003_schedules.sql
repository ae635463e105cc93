-- The latest slot claimed per schedule: a gateway runs a slot only if it moved this forward, so
-- among every gateway of the cluster one runs each slot.
CREATE TABLE schedule_slots (
    function text NOT NULL,
    schedule text NOT NULL,
    last_slot_ms bigint NOT NULL,
    PRIMARY KEY (function, schedule)
);
