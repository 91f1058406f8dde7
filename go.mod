module github.com/tenantplane/tenantplane

go 1.26
