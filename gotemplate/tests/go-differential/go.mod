module gotemplate-differential

go 1.22
