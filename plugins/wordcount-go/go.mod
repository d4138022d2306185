module weir.example/wordcount

go 1.24
