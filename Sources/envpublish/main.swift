print("envpublish")
