DROP TABLE host_claims;
