DROP TABLE namespace_members;
DROP TABLE namespaces;
DROP TABLE org_members;
DROP TABLE orgs;
DROP TABLE users;
