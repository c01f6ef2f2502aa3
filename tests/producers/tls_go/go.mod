module wiretide/tlsgo

go 1.21
