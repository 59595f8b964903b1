-- A batch rewrites most of the windows it touches, and the windows on one page were mostly
-- written by the same earlier batch, so they are rewritten together, by one transaction that
-- cannot reclaim its own dead versions. At fillfactor 70 a page had room for two or three
-- new versions of its six or so rows; the rest moved to other pages as non-HOT updates that
-- insert into every index. At 50 a page keeps room for a new version of each of its rows.
-- Applies to pages filled from now on.
ALTER TABLE agg_1m SET (fillfactor = 50);
