package graph

// gqlgen.yml sits at the module root and names its paths from there.
//go:generate sh -c "cd .. && go tool gqlgen generate"
