-- Who created a category (the admin's user id); NULL for the default set that migrate
-- seeds. The backend dialect shows it as its ticketCategory's createdBy (seed 004).
ALTER TABLE categories ADD COLUMN IF NOT EXISTS created_by text;
