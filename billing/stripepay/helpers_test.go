package stripepay_test

import "strconv"

func itoa[T int64 | int](v T) string { return strconv.FormatInt(int64(v), 10) }
