package export_test

import (
	"bytes"
	"net/url"
)

func urlValues(q string) (url.Values, error) { return url.ParseQuery(q) }

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
