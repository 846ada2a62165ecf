-- Placeholder so the embed pattern matches before the first real migration lands.
SELECT 1;
